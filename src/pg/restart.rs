//! Pending restart without SQL: which changed settings only take effect when
//! the postmaster restarts.
//!
//! Each parameter's context comes from `postgres --describe-config` (one
//! tab-separated line per parameter: name, context, ...), read once at start
//! through `Processes::output`. When that fails, a built-in list of the
//! common `postmaster`-context settings is used, so the report degrades
//! instead of disappearing.
//!
//! A setting is pending when its effective value differs between the spec
//! Postgres was started with and the new spec. Effective values are read from
//! the verbatim `postgresql_conf` (a small parser of `name = value` lines)
//! overlaid by `cluster.settings`, names folded to lower case as Postgres
//! does. `port` is excluded: the `-C` connection string owns it.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::ComputeSpec;

/// The settings that need a postmaster restart to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingContexts {
    postmaster: BTreeSet<String>,
}

/// Used when `postgres --describe-config` cannot be run (PostgreSQL 15).
const BUILTIN_POSTMASTER: &[&str] = &[
    "archive_mode",
    "autovacuum_freeze_max_age",
    "autovacuum_max_workers",
    "autovacuum_multixact_freeze_max_age",
    "cluster_name",
    "data_directory",
    "dynamic_shared_memory_type",
    "hba_file",
    "hot_standby",
    "huge_pages",
    "ident_file",
    "listen_addresses",
    "max_connections",
    "max_files_per_process",
    "max_locks_per_transaction",
    "max_logical_replication_workers",
    "max_pred_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "port",
    "shared_buffers",
    "shared_memory_type",
    "shared_preload_libraries",
    "superuser_reserved_connections",
    "track_activity_query_size",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "wal_buffers",
    "wal_level",
    "wal_log_hints",
];

impl SettingContexts {
    /// The settings of postmaster context among `names_and_contexts`
    /// (`SettingsCatalogue::contexts`: the listing read once at launch).
    pub fn from_contexts<'a>(
        names_and_contexts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let postmaster = names_and_contexts
            .into_iter()
            .filter(|(_, context)| *context == "postmaster")
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        Self { postmaster }
    }

    /// Parses the output of `postgres --describe-config`.
    #[cfg(test)]
    pub fn parse_describe_config(out: &str) -> Self {
        Self::from_contexts(out.lines().filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        }))
    }

    pub fn builtin() -> Self {
        Self {
            postmaster: BUILTIN_POSTMASTER.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether no setting is known to need a restart.
    pub fn is_empty(&self) -> bool {
        self.postmaster.is_empty()
    }

    /// Whether changing `name` needs a restart.
    pub fn needs_restart(&self, name: &str) -> bool {
        self.postmaster.contains(&name.to_ascii_lowercase())
    }
}

/// Settings whose value differs between the spec Postgres runs with
/// (`running`) and `next`, and which need a restart; sorted by name.
pub fn pending_restart(
    contexts: &SettingContexts,
    running: &ComputeSpec,
    next: &ComputeSpec,
) -> Vec<String> {
    let before = effective_settings(running);
    let after = effective_settings(next);
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| n.as_str() != "port" && contexts.needs_restart(n))
        .filter(|n| before.get(*n) != after.get(*n))
        .cloned()
        .collect()
}

/// Setting name (lower case) -> value, as the spec makes Postgres see them.
fn effective_settings(spec: &ComputeSpec) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    if let Some(conf) = &spec.cluster.postgresql_conf {
        for line in conf.lines() {
            if let Some((name, value)) = parse_conf_line(line) {
                out.insert(name, Some(value));
            }
        }
    }
    for s in spec.settings() {
        out.insert(s.name.to_ascii_lowercase(), s.value.clone());
    }
    out
}

/// Name (lower case) -> value of a config file's text, later lines winning
/// (the dry run's settings diff of two rendered `postgresql.conf`s).
pub fn conf_values(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(parse_conf_line).collect()
}

/// Parses one `name = value` (or `name value`) line of a config file;
/// comments, blank lines and include directives give `None`.
fn parse_conf_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_start();
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    if name_len == 0 {
        return None;
    }
    let name = line[..name_len].to_ascii_lowercase();
    if name.starts_with("include") {
        return None;
    }
    let rest = line[name_len..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('\'') {
        let mut v = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    v.push('\'');
                }
                '\'' => break,
                '\\' => v.push(chars.next().unwrap_or('\\')),
                c => v.push(c),
            }
        }
        v
    } else {
        rest.split(|c: char| c == '#' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_string()
    };
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(conf: &str, settings: &[(&str, &str)]) -> ComputeSpec {
        serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "cluster": {
                "postgresql_conf": conf,
                "settings": settings.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v, "vartype": "string"})).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    const DESCRIBE: &str = "shared_buffers\tpostmaster\tResource Usage / Memory\tINTEGER\t1024\t16\t1073741823\tSets ...\t\n\
                            work_mem\tuser\tResource Usage / Memory\tINTEGER\t4096\t64\t2147483647\tSets ...\t\n\
                            max_connections\tpostmaster\tConnections\tINTEGER\t100\t1\t262143\tSets ...\t\n\
                            port\tpostmaster\tConnections\tINTEGER\t5432\t1\t65535\tSets ...\t\n";

    #[test]
    fn describe_config_contexts_are_parsed() {
        let c = SettingContexts::parse_describe_config(DESCRIBE);
        assert!(c.needs_restart("shared_buffers") && c.needs_restart("Max_Connections"));
        assert!(!c.needs_restart("work_mem") && !c.needs_restart("unknown"));
    }

    #[test]
    fn only_changed_postmaster_settings_are_pending() {
        let c = SettingContexts::parse_describe_config(DESCRIBE);
        let running = spec(
            "max_connections = 100",
            &[("shared_buffers", "128MB"), ("work_mem", "4MB")],
        );
        let next = spec(
            "max_connections = '200' # more",
            &[
                ("shared_buffers", "128MB"),
                ("work_mem", "64MB"),
                ("port", "1"),
            ],
        );
        assert_eq!(
            pending_restart(&c, &running, &next),
            vec!["max_connections"]
        );
        assert!(pending_restart(&c, &running, &running).is_empty());
        // Removing a postmaster setting is a change too.
        let removed = spec("max_connections = 100", &[("work_mem", "4MB")]);
        assert_eq!(
            pending_restart(&c, &running, &removed),
            vec!["shared_buffers"]
        );
    }

    #[test]
    fn conf_lines_parse_like_postgres() {
        assert_eq!(parse_conf_line("a = 1"), Some(("a".into(), "1".into())));
        assert_eq!(
            parse_conf_line("  A 'x''y\\\\z' # c"),
            Some(("a".into(), "x'y\\z".into()))
        );
        assert_eq!(
            parse_conf_line("x.y=on#c"),
            Some(("x.y".into(), "on".into()))
        );
        assert_eq!(parse_conf_line("# comment"), None);
        assert_eq!(parse_conf_line(""), None);
        assert_eq!(parse_conf_line("include 'other.conf'"), None);
    }

    #[test]
    fn builtin_list_knows_the_usual_suspects() {
        let c = SettingContexts::builtin();
        assert!(c.needs_restart("shared_buffers") && c.needs_restart("shared_preload_libraries"));
        assert!(!c.needs_restart("work_mem"));
    }
}
