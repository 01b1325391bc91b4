//! The settings the Postgres binary in use knows, from its own
//! `postgres --describe-config` (read once per binary, no SQL), and the check
//! of a spec's settings against them before anything is written.
//!
//! Each line of `--describe-config` is tab-separated: name, context, group,
//! type (`BOOLEAN`, `INTEGER`, `REAL`, `STRING`, `ENUM`), boot value, min,
//! max, descriptions. What it says is what is checked:
//! - the name: a setting the binary does not have is refused (a name with a
//!   dot is an extension's custom setting, which Postgres accepts in the file);
//! - a boolean: Postgres' spellings (`on`, `off`, `true`, `yes`, `1`, their
//!   unique prefixes);
//! - an integer or real: a number, with an optional unit suffix; a number
//!   without unit is in the setting's base unit, so it is checked against the
//!   bounds.
//!
//! What the listing does not say (an enum's values, a setting's units and
//! base unit) is asked of the binary itself before anything is written
//! ([`judge_setting`]: `postgres -C name -c name=value`, which parses the
//! value exactly as the server would and says why it refuses it, with the
//! allowed values or units, or the range); [`SettingsCatalogue::to_judge`]
//! lists those settings. After the reload [`super::file_settings`] still
//! catches anything Postgres refuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::PgError;
use super::error::stderr_tail;
use super::setting_units::BaseUnit;
use crate::env::{CommandSpec, Env, timeout};
use crate::params::ComputeParams;
use crate::spec::ComputeSpec;

/// `postgres --describe-config` answers in milliseconds; this bounds a hang.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The units Postgres accepts after a number (memory and time).
const UNITS: &[&str] = &[
    "B", "kB", "MB", "GB", "TB", "us", "ms", "s", "min", "h", "d",
];

/// A setting's type as `--describe-config` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Bool,
    Integer,
    Real,
    String,
    Enum,
}

/// What the binary says about one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingDef {
    pub context: String,
    pub kind: SettingKind,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Every setting of one Postgres binary, by lower-case name.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsCatalogue {
    /// The major version (`postgres --version`), to name in refusals.
    pub major: u32,
    settings: BTreeMap<String, SettingDef>,
}

/// One setting of a spec that the binary refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRefusal {
    /// JSON path of the spec field, e.g. `$.cluster.settings[2].value`.
    pub path: String,
    pub message: String,
    /// The name, when the refusal is that `--describe-config` does not
    /// list it: that listing leaves out settings marked "not in sample"
    /// (`application_name`, developer settings), so such a name is
    /// confirmed with [`setting_exists`] before it is refused.
    pub unlisted: Option<String>,
}

impl SettingsCatalogue {
    /// Parses `postgres --describe-config` of a binary of `major`.
    pub fn parse(describe_config: &str, major: u32) -> Self {
        let settings = describe_config
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let kind = match *f.get(3)? {
                    "BOOLEAN" => SettingKind::Bool,
                    "INTEGER" => SettingKind::Integer,
                    "REAL" => SettingKind::Real,
                    "STRING" => SettingKind::String,
                    "ENUM" => SettingKind::Enum,
                    _ => return None,
                };
                let bound = |i: usize| f.get(i).and_then(|v| v.trim().parse::<f64>().ok());
                Some((
                    f[0].to_ascii_lowercase(),
                    SettingDef {
                        context: f[1].to_string(),
                        kind,
                        min: bound(5),
                        max: bound(6),
                    },
                ))
            })
            .collect();
        Self { major, settings }
    }

    /// How many settings the binary has.
    pub fn len(&self) -> usize {
        self.settings.len()
    }

    /// Whether the binary listed no setting at all.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// Which settings need a restart (postmaster context), from this same
    /// listing: no second `--describe-config` at start.
    pub fn contexts(&self) -> super::SettingContexts {
        super::SettingContexts::from_contexts(
            self.settings
                .iter()
                .map(|(name, def)| (name.as_str(), def.context.as_str())),
        )
    }

    /// Every setting, by lower-case name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SettingDef)> {
        self.settings.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// What the binary says about `name`.
    pub fn get(&self, name: &str) -> Option<&SettingDef> {
        self.settings.get(&name.to_ascii_lowercase())
    }

    /// Why this binary refuses `name = value`, or `Ok` (also for what it
    /// cannot judge: enum values, bounds of a value with a unit).
    pub fn check(&self, name: &str, value: &str) -> Result<(), String> {
        let major = self.major;
        if name.contains('.') {
            return Ok(());
        }
        let Some(def) = self.get(name) else {
            return Err(format!(
                "PostgreSQL {major} has no setting \"{name}\" (`postgres --describe-config` of the binary in use does not list it); remove it, or set it only on a major that has it"
            ));
        };
        let v = value.trim();
        match def.kind {
            SettingKind::String | SettingKind::Enum => Ok(()),
            SettingKind::Bool if is_bool(v) => Ok(()),
            SettingKind::Bool => Err(format!(
                "PostgreSQL {major} refuses {name} = '{value}': it takes a Boolean (on, off, true, false, yes, no, 1, 0)"
            )),
            SettingKind::Integer | SettingKind::Real => {
                let integer = def.kind == SettingKind::Integer;
                let Some((number, unit)) = split_number(v, integer) else {
                    return Err(format!(
                        "PostgreSQL {major} refuses {name} = '{value}': it takes {}, optionally with a unit ({})",
                        if integer { "an integer" } else { "a number" },
                        UNITS.join(", ")
                    ));
                };
                if !unit.is_empty() {
                    return Ok(());
                }
                match (def.min, def.max) {
                    (Some(min), _) if number < min => Err(format!(
                        "PostgreSQL {major} refuses {name} = '{value}': below its minimum {min} (a number without unit is in the setting's base unit)"
                    )),
                    (_, Some(max)) if number > max => Err(format!(
                        "PostgreSQL {major} refuses {name} = '{value}': above its maximum {max} (a number without unit is in the setting's base unit)"
                    )),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether `name = value` is one the listing cannot judge but the
    /// binary can ([`judge_setting`]): an enum's value, or a number with a
    /// unit (its units and base unit are not listed).
    pub fn needs_binary(&self, name: &str, value: &str) -> bool {
        let Some(def) = self.get(name).filter(|_| !name.contains('.')) else {
            return false;
        };
        let v = value.trim();
        match def.kind {
            SettingKind::Enum => true,
            SettingKind::Integer | SettingKind::Real => {
                split_number(v, def.kind == SettingKind::Integer)
                    .is_some_and(|(_, unit)| !unit.is_empty())
            }
            SettingKind::Bool | SettingKind::String => false,
        }
    }

    /// The settings of `spec` that [`check`](Self::check) lets through but
    /// that only the binary can judge ([`needs_binary`](Self::needs_binary)),
    /// with the JSON path each is reported at.
    pub fn to_judge(&self, spec: &ComputeSpec) -> Vec<SettingToJudge> {
        let mut out = Vec::new();
        let mut consider = |path: String, name: &str, value: &str| {
            if self.check(name, value).is_ok() && self.needs_binary(name, value) {
                out.push(SettingToJudge {
                    path,
                    name: name.to_ascii_lowercase(),
                    value: value.trim().to_string(),
                });
            }
        };
        for (i, opt) in spec.settings().iter().enumerate() {
            if let Some(value) = opt.value.as_deref() {
                consider(format!("$.cluster.settings[{i}].value"), &opt.name, value);
            }
        }
        if let Some(conf) = &spec.cluster.postgresql_conf {
            for (name, value) in super::conf_values(conf) {
                consider("$.cluster.postgresql_conf".into(), &name, &value);
            }
        }
        out
    }

    /// Every setting of `spec` this binary refuses: `cluster.settings`
    /// (path of the name or the value) and the verbatim `postgresql_conf`.
    pub fn check_spec(&self, spec: &ComputeSpec) -> Vec<SettingRefusal> {
        let mut out = Vec::new();
        for (i, opt) in spec.settings().iter().enumerate() {
            let Some(value) = opt.value.as_deref() else {
                continue;
            };
            if let Err(message) = self.check(&opt.name, value) {
                let unlisted = self.get(&opt.name).is_none();
                out.push(SettingRefusal {
                    path: format!(
                        "$.cluster.settings[{i}].{}",
                        if unlisted { "name" } else { "value" }
                    ),
                    message,
                    unlisted: unlisted.then(|| opt.name.to_ascii_lowercase()),
                });
            }
        }
        if let Some(conf) = &spec.cluster.postgresql_conf {
            for (name, value) in super::conf_values(conf) {
                if let Err(message) = self.check(&name, &value) {
                    let unlisted = self.get(&name).is_none();
                    out.push(SettingRefusal {
                        path: "$.cluster.postgresql_conf".into(),
                        message,
                        unlisted: unlisted.then_some(name),
                    });
                }
            }
        }
        out
    }
}

/// A setting whose value only the binary can judge ([`judge_setting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingToJudge {
    /// JSON path of the spec field.
    pub path: String,
    /// Lower case.
    pub name: String,
    pub value: String,
}

/// Postgres' `parse_bool`: on/off, and unique prefixes of true/false/yes/no, 1/0.
fn is_bool(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    if v.is_empty() {
        return false;
    }
    matches!(v.as_str(), "on" | "off" | "of" | "1" | "0")
        || ["true", "false", "yes", "no"]
            .iter()
            .any(|w| w.starts_with(v.as_str()))
}

/// A number (integer: decimal or 0x hex) and what follows it, which must be
/// empty or one of [`UNITS`] after optional spaces.
fn split_number(v: &str, integer: bool) -> Option<(f64, &str)> {
    let end = v
        .find(|c: char| !(c.is_ascii_hexdigit() || "+-.xXeE".contains(c)))
        .unwrap_or(v.len());
    // A unit may start with a hex digit (`B`, `d`): take the longest number prefix that parses.
    (1..=end).rev().find_map(|cut| {
        let (num, rest) = v.split_at(cut);
        let unit = rest.trim_start();
        if !(unit.is_empty() || UNITS.contains(&unit)) {
            return None;
        }
        let number = if integer {
            parse_int(num)?
        } else {
            num.parse::<f64>().ok().filter(|f| f.is_finite())?
        };
        Some((number, unit))
    })
}

fn parse_int(s: &str) -> Option<f64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        // Postgres also accepts a fraction for an integer with a unit
        // ("1.5GB"); without unit it rounds, so a real number is accepted.
        None => match digits.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return digits.parse::<f64>().ok().map(|f| if neg { -f } else { f }),
        },
    };
    Some(if neg { -(n as f64) } else { n as f64 })
}

/// Runs `postgres ARG` as the Postgres user and gives its stdout (also
/// `restart.rs`'s `--describe-config`).
pub(super) async fn run_postgres<E: Env>(
    env: &E,
    params: &ComputeParams,
    arg: &str,
) -> Result<String, PgError> {
    let who = env.postgres_identity().map_err(PgError::Identity)?;
    let mut cmd = CommandSpec::new(&params.pgbin).arg(arg).run_as(who);
    cmd.current_dir = Some("/".into());
    let out = match timeout(env, DESCRIBE_TIMEOUT, env.output(&cmd)).await {
        Err(_) => {
            return Err(PgError::CommandTimeout {
                command: cmd.display(),
                after: DESCRIBE_TIMEOUT,
            });
        }
        Ok(Err(source)) => {
            return Err(PgError::Spawn {
                command: cmd.display(),
                source,
            });
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(PgError::Command {
            command: cmd.display(),
            status: out.status,
            stderr: stderr_tail(&out.stderr),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the binary knows `name`, asked of Postgres itself:
/// `postgres -D PGDATA -C name` (it works beside a running server and reads
/// only the config files). `None` when it cannot say (no PGDATA yet, the
/// program cannot run): then Postgres judges the name when it loads it.
pub async fn setting_exists<E: Env>(env: &E, params: &ComputeParams, name: &str) -> Option<bool> {
    let who = env.postgres_identity().ok()?;
    let mut cmd = CommandSpec::new(&params.pgbin)
        .arg("-D")
        .arg(params.pgdata.display().to_string())
        .arg("-C")
        .arg(name)
        .run_as(who);
    cmd.current_dir = Some("/".into());
    let out = timeout(env, DESCRIBE_TIMEOUT, env.output(&cmd))
        .await
        .ok()?
        .ok()?;
    if out.status.success() {
        return Some(true);
    }
    String::from_utf8_lossy(&out.stderr)
        .contains("unrecognized configuration parameter")
        .then_some(false)
}

/// What the binary says of `name = value`, asked as `postgres -C name -c
/// name=value` (as the Postgres user; `-C` first, so no data directory is
/// needed): the `-c` value is parsed like a config line before anything
/// else, so a value it refuses stops it with Postgres' own reason and hint
/// (the allowed values, the units, the range). `Some(Ok)` it takes the
/// value, `Some(Err(reason))` it refuses it, `None` it cannot say (the
/// program did not run): then Postgres judges the value when it loads it.
pub async fn judge_setting<E: Env>(
    env: &E,
    params: &ComputeParams,
    name: &str,
    value: &str,
) -> Option<Result<(), String>> {
    let out = show_setting_as(env, params, name, value).await?;
    parse_judgement(
        &String::from_utf8_lossy(&out.stderr),
        name,
        out.status.success(),
    )
}

/// The base unit of the integer setting `name`, learnt from the binary's
/// refusal of a value below its minimum (see `setting_units.rs`); `None`
/// when it takes no unit or the binary cannot say.
pub async fn learn_base_unit<E: Env>(
    env: &E,
    params: &ComputeParams,
    name: &str,
    def: &SettingDef,
) -> Option<BaseUnit> {
    let probe = BaseUnit::probe(def)?;
    let out = show_setting_as(env, params, name, &probe.to_string()).await?;
    BaseUnit::learn(probe, name, &String::from_utf8_lossy(&out.stderr))
}

/// `postgres -C name -c name=value` as the Postgres user (`-C` first, so
/// no data directory is needed), its messages in the C locale (they are
/// read); `None` when it could not be run.
async fn show_setting_as<E: Env>(
    env: &E,
    params: &ComputeParams,
    name: &str,
    value: &str,
) -> Option<crate::env::ProcessOutput> {
    let who = env.postgres_identity().ok()?;
    let mut cmd = CommandSpec::new(&params.pgbin)
        .arg("-C")
        .arg(name)
        .arg("-c")
        .arg(format!("{name}={value}"))
        .env("LC_ALL", "C")
        .run_as(who);
    cmd.current_dir = Some("/".into());
    timeout(env, DESCRIBE_TIMEOUT, env.output(&cmd))
        .await
        .ok()?
        .ok()
}

/// Reads [`judge_setting`]'s answer: Postgres' FATAL line about this
/// parameter (with its HINT) is a refusal; exiting well, or stopping only
/// because it has no data directory, is a yes; anything else, no answer.
pub fn parse_judgement(stderr: &str, name: &str, success: bool) -> Option<Result<(), String>> {
    let about = format!("parameter \"{}\"", name.to_ascii_lowercase());
    let text_after = |line: &str, tag: &str| {
        line.split_once(tag)
            .map(|(_, rest)| rest.trim().to_string())
    };
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        let Some(fatal) = text_after(line, "FATAL:") else {
            continue;
        };
        if !fatal.to_ascii_lowercase().contains(&about) {
            continue;
        }
        let hint = lines.next().and_then(|l| text_after(l, "HINT:"));
        return Some(Err(match hint {
            Some(h) => format!("{fatal}; {h}"),
            None => fatal,
        }));
    }
    (success || stderr.contains("does not know where to find the server configuration file"))
        .then_some(Ok(()))
}

/// The major of `postgres --version` output (`postgres (PostgreSQL) 17.11`).
pub fn parse_major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
}

/// Asks the binary of `params` for its `--version` and `--describe-config`
/// (both at once: each is a process start, and a start waits for them).
pub async fn ask_settings_listing<E: Env>(
    env: &E,
    params: &ComputeParams,
) -> Result<(String, String), PgError> {
    let (version, listing) = futures::future::join(
        run_postgres(env, params, "--version"),
        run_postgres(env, params, "--describe-config"),
    )
    .await;
    Ok((version?, listing?))
}

impl SettingsCatalogue {
    /// The catalogue of the binary at `pgbin` from its `--version` and
    /// `--describe-config` output; an empty listing is an error, not an
    /// empty catalogue.
    pub fn from_listing(pgbin: &Path, version: &str, listing: &str) -> Result<Self, PgError> {
        let major = parse_major(version).ok_or_else(|| {
            PgError::Config(format!(
                "`{} --version` printed no version: {version:?}",
                pgbin.display()
            ))
        })?;
        let catalogue = Self::parse(listing, major);
        if catalogue.is_empty() {
            return Err(PgError::Config(format!(
                "`{} --describe-config` listed no settings",
                pgbin.display()
            )));
        }
        Ok(catalogue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "enable_seqscan\tuser\tQuery Tuning\tBOOLEAN\tFALSE\t\t\tEnables.\t\n\
        work_mem\tuser\tResource Usage / Memory\tINTEGER\t0\t64\t2147483647\tSets.\t\n\
        log_min_messages\tsuperuser\tLogging\tENUM\twarning\t\t\tSets.\t\n\
        seq_page_cost\tuser\tQuery Tuning\tREAL\t0\t0\t1.79769e+308\tSets.\t\n\
        search_path\tuser\tClient\tSTRING\t\"$user\", public\t\t\tSets.\t\n\
        io_method\tpostmaster\tResource Usage / I/O\tENUM\tworker\t\t\tSelects.\t\n";

    fn cat() -> SettingsCatalogue {
        SettingsCatalogue::parse(LISTING, 18)
    }

    #[test]
    fn parses_kinds_and_bounds() {
        let c = cat();
        assert_eq!(c.len(), 6);
        let w = c.get("WORK_MEM").unwrap();
        assert_eq!(
            (w.kind, w.min, w.max),
            (SettingKind::Integer, Some(64.0), Some(2147483647.0))
        );
        assert_eq!(c.get("io_method").unwrap().context, "postmaster");
    }

    #[test]
    fn unknown_names_are_refused_with_the_major_and_dotted_names_pass() {
        let e = cat().check("old_snapshot_threshold", "10").unwrap_err();
        assert!(
            e.contains("PostgreSQL 18 has no setting \"old_snapshot_threshold\""),
            "{e}"
        );
        assert!(cat().check("neon.timeline_id", "x").is_ok());
        assert!(cat().check("pg_stat_statements.max", "x").is_ok());
    }

    #[test]
    fn booleans_follow_parse_bool() {
        for ok in ["on", "OFF", "true", "t", "fal", "yes", "n", "1", "0"] {
            assert!(cat().check("enable_seqscan", ok).is_ok(), "{ok}");
        }
        for bad in ["maybe", "", "o", "2", "onn"] {
            assert!(cat().check("enable_seqscan", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_are_checked_against_bounds_without_unit() {
        let c = cat();
        assert!(c.check("work_mem", "64").is_ok());
        assert!(c.check("work_mem", "4MB").is_ok());
        assert!(c.check("work_mem", "4 MB").is_ok());
        assert!(c.check("work_mem", "1.5GB").is_ok());
        assert!(c.check("work_mem", "0x100").is_ok());
        let e = c.check("work_mem", "32").unwrap_err();
        assert!(e.contains("below its minimum 64"), "{e}");
        assert!(c.check("work_mem", "3000000000").is_err());
        assert!(c.check("work_mem", "lots").is_err());
        assert!(c.check("work_mem", "4XB").is_err());
        assert!(c.check("seq_page_cost", "1.5").is_ok());
        assert!(c.check("seq_page_cost", "-1").is_err());
    }

    #[test]
    fn strings_pass_and_enums_and_units_are_left_to_the_binary() {
        let c = cat();
        assert!(c.check("search_path", "anything").is_ok());
        assert!(!c.needs_binary("search_path", "anything"));
        assert!(c.check("log_min_messages", "bogus").is_ok());
        assert!(c.needs_binary("log_min_messages", "bogus"));
        assert!(c.needs_binary("work_mem", "4MB"));
        assert!(!c.needs_binary("work_mem", "4096"), "bounds checked here");
        assert!(!c.needs_binary("enable_seqscan", "on"));
        assert!(!c.needs_binary("neon.x", "1"));
        let spec: ComputeSpec = serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "cluster": {
                "settings": [
                    {"name": "Log_Min_Messages", "value": "bogus", "vartype": "enum"},
                    {"name": "work_mem", "value": "32", "vartype": "integer"},
                    {"name": "seq_page_cost", "value": "2", "vartype": "real"}
                ],
                "postgresql_conf": "io_method = 'io_uring'\nwork_mem = '8MB'\n"
            }
        }))
        .unwrap();
        let judged: Vec<(String, String, String)> = c
            .to_judge(&spec)
            .into_iter()
            .map(|j| (j.path, j.name, j.value))
            .collect();
        assert_eq!(
            judged,
            [
                (
                    "$.cluster.settings[0].value".into(),
                    "log_min_messages".into(),
                    "bogus".into()
                ),
                (
                    "$.cluster.postgresql_conf".into(),
                    "io_method".into(),
                    "io_uring".into()
                ),
                (
                    "$.cluster.postgresql_conf".into(),
                    "work_mem".into(),
                    "8MB".into()
                ),
            ]
        );
    }

    #[test]
    fn the_binary_s_refusal_is_read_with_its_hint() {
        let enum_refusal = "2026-12-03 19:43:53.485 GMT [27078] FATAL:  invalid value for parameter \"wal_level\": \"bogus\"\n\
            2026-12-03 19:43:53.485 GMT [27078] HINT:  Available values: minimal, replica, logical.\n";
        assert_eq!(
            parse_judgement(enum_refusal, "wal_level", false),
            Some(Err("invalid value for parameter \"wal_level\": \"bogus\"; Available values: minimal, replica, logical.".into()))
        );
        let range = "2026-12-03 19:43:53.711 GMT [27090] FATAL:  0 8kB is outside the valid range for parameter \"shared_buffers\" (16 .. 1073741823)\n";
        assert_eq!(
            parse_judgement(range, "Shared_Buffers", false),
            Some(Err("0 8kB is outside the valid range for parameter \"shared_buffers\" (16 .. 1073741823)".into()))
        );
        let taken = "postgres does not know where to find the server configuration file.\nYou must specify the --config-file or -D invocation option or set the PGDATA environment variable.\n";
        assert_eq!(parse_judgement(taken, "wal_level", false), Some(Ok(())));
        assert_eq!(parse_judgement("", "wal_level", true), Some(Ok(())));
        // Another parameter's trouble, or a crash, says nothing of this one.
        let other = "FATAL:  invalid value for parameter \"work_mem\": \"x\"\n";
        assert_eq!(parse_judgement(other, "wal_level", false), None);
        assert_eq!(
            parse_judgement("Segmentation fault", "wal_level", false),
            None
        );
    }

    #[test]
    fn the_major_comes_from_the_version_line() {
        assert_eq!(parse_major("postgres (PostgreSQL) 17.11\n"), Some(17));
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("nothing"), None);
    }
}
