//! Settings: what `postgres --describe-config` prints, and reading
//! `postgresql.conf` the way the postmaster does at start and on SIGHUP.

use std::collections::BTreeMap;

/// (name, context, vartype, default) of the settings the simulated server knows.
const SETTINGS: &[(&str, &str, &str, &str)] = &[
    ("application_name", "user", "STRING", ""),
    ("hot_standby", "postmaster", "BOOLEAN", "on"),
    ("listen_addresses", "postmaster", "STRING", "localhost"),
    ("log_connections", "superuser-backend", "BOOLEAN", "off"),
    ("log_min_messages", "superuser", "ENUM", "warning"),
    ("max_connections", "postmaster", "INTEGER", "100"),
    ("max_wal_senders", "postmaster", "INTEGER", "10"),
    ("password_encryption", "user", "ENUM", "scram-sha-256"),
    ("port", "postmaster", "INTEGER", "5432"),
    ("primary_conninfo", "sighup", "STRING", ""),
    ("search_path", "user", "STRING", "\"$user\", public"),
    ("shared_buffers", "postmaster", "INTEGER", "16384"),
    ("shared_preload_libraries", "postmaster", "STRING", ""),
    ("statement_timeout", "user", "INTEGER", "0"),
    ("wal_level", "postmaster", "ENUM", "replica"),
    ("work_mem", "user", "INTEGER", "4096"),
];

/// The output of `postgres --describe-config`: one tab-separated line per
/// setting (name, context, group, vartype, reset value, min, max, short, long).
pub fn describe_config() -> String {
    let mut out = String::new();
    for (name, context, vartype, default) in SETTINGS {
        out.push_str(&format!(
            "{name}\t{context}\tSimulated\t{vartype}\t{default}\t\t\tSimulated setting {name}.\t\n"
        ));
    }
    out
}

/// Parses `postgresql.conf`: `name = value` lines, `#` comments, quoted values.
pub fn parse_conf(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((n, v)) => (n.trim(), v.trim()),
                None => continue,
            },
        };
        let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            Some(q) => q.replace("''", "'").replace("\\'", "'"),
            None => value.to_string(),
        };
        out.insert(name.to_ascii_lowercase(), value);
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let mut in_quote = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' => in_quote = !in_quote,
            '#' if !in_quote => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_lines_with_quotes_and_comments() {
        let c = parse_conf(
            "# header\nport = 55432\nneon.pageserver_connstring = 'host=storage port=6400' # moved\nlisten_addresses '*'\n",
        );
        assert_eq!(c["port"], "55432");
        assert_eq!(c["neon.pageserver_connstring"], "host=storage port=6400");
        assert_eq!(c["listen_addresses"], "*");
    }

    #[test]
    fn describe_config_has_contexts() {
        let d = describe_config();
        assert!(
            d.lines()
                .any(|l| l.starts_with("max_connections\tpostmaster\t"))
        );
        assert!(
            d.lines()
                .any(|l| l.starts_with("statement_timeout\tuser\t"))
        );
    }
}
