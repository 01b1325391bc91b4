//! Spec validation: every problem at once, each with its JSON path.
//!
//! Rules that are decisions rather than Postgres facts:
//! - A database owner must be a role of the spec, the new name of a
//!   `rename_role` delta, or the supervisor's own superuser (the only role we
//!   know exists before the spec: initdb creates it). Anything else would make
//!   `CREATE DATABASE ... OWNER` fail halfway through an apply, so it is
//!   rejected before any work starts.
//! - A delta operation must not delete or rename a role or database that
//!   `cluster` also lists: deltas replay on every apply, so the spec would
//!   undo the delta each time and the catalog would never converge.
//! - A replica or static compute streams from its storage, so it needs a
//!   `pageserver_connstring`; a static LSN must be `X/Y` hex; storage
//!   connection strings must parse (libpq URL, key=value, or `host:port`).
//! - [`validate_change`]: a running compute cannot change `mode` (that is a
//!   new Postgres, not a reload of this one), and a running primary cannot
//!   gain its first safekeepers or lose all of them (durability is decided
//!   at a start, from a sync of the safekeepers).
//! - Names are at most 63 bytes (`NAMEDATALEN - 1`); Postgres would silently
//!   truncate longer ones, which breaks idempotence.

use std::collections::BTreeSet;

use serde::Serialize;

use super::model::{ComputeMode, ComputeSpec, DeltaAction, GenericOption, VARTYPES};
use super::{Endpoint, Lsn};

/// Postgres identifiers are at most this many bytes.
pub const MAX_NAME_BYTES: usize = 63;

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    /// JSON path, e.g. `$.cluster.roles[2].name`.
    pub path: String,
    pub message: String,
}

impl SpecProblem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// All problems on one line, for error messages.
    pub fn join(problems: &[SpecProblem]) -> String {
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What validation knows beyond the spec itself.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// The supervisor's superuser (the user of `--connstr`), which always exists.
    pub superuser: String,
}

impl Default for ValidationContext {
    fn default() -> Self {
        Self {
            superuser: "cloud_admin".to_string(),
        }
    }
}

/// Returns every problem of `spec`; empty means valid.
pub fn validate(spec: &ComputeSpec, ctx: &ValidationContext) -> Vec<SpecProblem> {
    let mut out = Vec::new();
    if spec.format_version != 1.0 {
        out.push(SpecProblem::new(
            "$.format_version",
            format!(
                "unsupported format_version {}; only 1.0 is supported",
                spec.format_version
            ),
        ));
    }
    if spec.reconfigure_concurrency == Some(0) {
        out.push(SpecProblem::new(
            "$.reconfigure_concurrency",
            "must be at least 1",
        ));
    }
    // The role names, sorted once: duplicates are adjacent, and owners and
    // deltas are looked up by binary search (no set built per request).
    let mut role_names: Vec<&str> = spec.cluster.roles.iter().map(|r| r.name.as_str()).collect();
    role_names.sort_unstable();
    let duplicate_roles = role_names.windows(2).any(|w| w[0] == w[1]);
    check_roles(spec, duplicate_roles, &mut out);
    check_databases(spec, ctx, &role_names, &mut out);
    check_deltas(spec, &role_names, &mut out);
    check_options(spec.settings(), "$.cluster.settings", true, &mut out);
    for (name, value) in [
        (
            "pageserver_connstring",
            spec.pageserver_connstring.as_deref(),
        ),
        ("tenant_id", spec.tenant_id.as_deref()),
        ("timeline_id", spec.timeline_id.as_deref()),
    ] {
        if let Some(v) = value {
            check_value(v, || format!("$.{name}"), &mut out);
        }
    }
    if let Some(info) = &spec.pageserver_connection_info {
        if info.shards() > 1 {
            out.push(SpecProblem::new(
                "$.pageserver_connection_info.shard_count",
                format!(
                    "{} shards: sharded storage needs Neon's storage extension; vanilla Postgres takes one base backup source",
                    info.shards()
                ),
            ));
        }
    }
    for (i, s) in spec.safekeeper_connstrings.iter().enumerate() {
        check_value(s, || format!("$.safekeeper_connstrings[{i}]"), &mut out);
    }
    check_storage(spec, ctx, &mut out);
    if let Some(conf) = &spec.cluster.postgresql_conf {
        if conf.contains('\0') {
            out.push(SpecProblem::new(
                "$.cluster.postgresql_conf",
                "contains a NUL byte",
            ));
        }
    }
    out
}

/// The mode's needs and the storage connection strings.
fn check_storage(spec: &ComputeSpec, ctx: &ValidationContext, out: &mut Vec<SpecProblem>) {
    let source = spec
        .pageserver_connstring
        .as_deref()
        .filter(|c| !c.trim().is_empty());
    if let ComputeMode::Static(lsn) = &spec.mode {
        if let Err(e) = lsn.parse::<Lsn>() {
            out.push(SpecProblem::new("$.mode.Static", e.to_string()));
        }
    }
    if spec.mode != ComputeMode::Primary && source.is_none() {
        out.push(SpecProblem::new(
            "$.pageserver_connstring",
            format!(
                "a {} compute streams WAL from its storage; set pageserver_connstring to the source's libpq connection string",
                mode_name(&spec.mode)
            ),
        ));
    }
    if let Some(c) = source {
        if let Err(e) = Endpoint::parse(c, &ctx.superuser) {
            out.push(SpecProblem::new("$.pageserver_connstring", e.to_string()));
        }
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, c) in spec.safekeeper_connstrings.iter().enumerate() {
        match Endpoint::parse(c, &ctx.superuser) {
            Err(e) => out.push(SpecProblem::new(
                format!("$.safekeeper_connstrings[{i}]"),
                e.to_string(),
            )),
            Ok(ep) => {
                let addr = format!("{}:{}", ep.host.to_ascii_lowercase(), ep.port);
                match seen.iter().find(|(a, _)| *a == addr) {
                    Some((_, j)) => out.push(SpecProblem::new(
                        format!("$.safekeeper_connstrings[{i}]"),
                        format!(
                            "{addr} is also safekeeper_connstrings[{j}]: each safekeeper counts once towards the quorum; list it once"
                        ),
                    )),
                    None => seen.push((addr, i)),
                }
            }
        }
    }
}

/// Whether the safekeepers of `spec` can reach this compute at
/// `advertised` (where they stream WAL from): a loopback address only
/// serves safekeepers on this machine.
pub fn validate_advertise(
    spec: &ComputeSpec,
    advertised: &crate::params::AdvertiseAddr,
) -> Vec<SpecProblem> {
    if matches!(spec.mode, ComputeMode::Static(_)) || !advertised.is_loopback() {
        return Vec::new();
    }
    spec.safekeeper_connstrings
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let ep = Endpoint::parse(c, "-").ok()?;
            (!crate::params::is_loopback_host(&ep.host)).then(|| {
                SpecProblem::new(
                    format!("$.safekeeper_connstrings[{i}]"),
                    format!(
                        "the safekeeper {} is not on this machine, but this compute is advertised at the loopback address {advertised}, which it cannot reach; start compute_ctl with --advertise-addr host:port reachable from the safekeepers",
                        ep.shown
                    ),
                )
            })
        })
        .collect()
}

/// `primary`, `replica` or `static`.
pub fn mode_name(mode: &ComputeMode) -> &'static str {
    match mode {
        ComputeMode::Primary => "primary",
        ComputeMode::Replica => "replica",
        ComputeMode::Static(_) => "static",
    }
}

/// What a running compute cannot take from a new spec: a `mode` change
/// (Postgres would have to start again as another kind of server), and a
/// primary's safekeepers going from none to some or from some to none. A
/// primary becomes durable only at a start, from a sync of its safekeepers
/// (a reload would make every commit wait for standbys that never followed
/// it), and removing them all would silently drop the quorum guarantee.
pub fn validate_change(running: &ComputeSpec, new: &ComputeSpec) -> Vec<SpecProblem> {
    if running.mode == new.mode {
        return durability_change(running, new).into_iter().collect();
    }
    let show = |m: &ComputeMode| match m {
        ComputeMode::Static(l) => format!("static at {l}"),
        m => mode_name(m).to_string(),
    };
    vec![SpecProblem::new(
        "$.mode",
        format!(
            "the running compute is {}, the spec asks for {}; a mode change needs a restart, not a reload: terminate this compute and start one with the new spec",
            show(&running.mode),
            show(&new.mode)
        ),
    )]
}

/// A primary that would gain its first safekeepers, or lose all of them,
/// by a reload.
fn durability_change(running: &ComputeSpec, new: &ComputeSpec) -> Option<SpecProblem> {
    if running.mode != ComputeMode::Primary {
        return None;
    }
    let message = match (
        running.safekeeper_connstrings.is_empty(),
        new.safekeeper_connstrings.is_empty(),
    ) {
        (true, false) => {
            "the running primary was started without safekeepers (it is ephemeral); a primary becomes durable only at a start, from a sync of its safekeepers, not by a reload: restart this compute with the spec, or start a new compute with it"
        }
        (false, true) => {
            "the running primary's commits wait for a quorum of its safekeepers; an empty list would silently drop that guarantee: name the safekeepers (a different set moves the compute to it), or terminate this compute and start one without safekeepers if it is meant to be ephemeral"
        }
        _ => return None,
    };
    Some(SpecProblem::new("$.safekeeper_connstrings", message))
}

/// `duplicates`: whether some role name occurs twice (then each later
/// occurrence is reported, in order).
fn check_roles(spec: &ComputeSpec, duplicates: bool, out: &mut Vec<SpecProblem>) {
    let mut seen = BTreeSet::new();
    for (i, role) in spec.cluster.roles.iter().enumerate() {
        let path = |field: &str| format!("$.cluster.roles[{i}].{field}");
        check_name(&role.name, || path("name"), out);
        if duplicates && !seen.insert(role.name.as_str()) {
            out.push(SpecProblem::new(
                path("name"),
                format!("duplicate role name {:?}", role.name),
            ));
        }
        // 32 hex digits hold no NUL, newline or quote: only other
        // passwords need the checks below.
        let other_password = role
            .encrypted_password
            .as_deref()
            .filter(|pw| !is_md5_hex(pw));
        if let Some(pw) = other_password {
            if !pw.starts_with("SCRAM-SHA-256$") {
                out.push(SpecProblem::new(
                    path("encrypted_password"),
                    "must be 32 hex digits (md5, without the md5 prefix) or a SCRAM-SHA-256$ verifier",
                ));
            } else if pw.contains(['\0', '\n', '\'']) {
                out.push(SpecProblem::new(
                    path("encrypted_password"),
                    "contains a NUL, newline or quote",
                ));
            }
        }
        if let Some(opts) = &role.options {
            check_options(opts, &path("options"), false, out);
            // `superuser` is refused here, with the other role options the
            // catalog cannot map (see `role_options`).
            if let Err(e) = super::role_options::parse_role_options(opts) {
                out.push(SpecProblem::new(
                    format!("{}[{}].{}", path("options"), e.index, e.field),
                    e.message,
                ));
            }
        }
    }
}

/// Whether `s` is an md5 password hash as Neon sends it: 32 hex digits.
///
/// Every byte is looked at (a fold, not `all`): without an early exit the
/// loop has no data-dependent branch, and random hex digits made that
/// branch mispredict on about every byte (153 ns a password; 5.5 ns now,
/// which at 5,000 roles was most of a notify's validation).
pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().fold(true, |ok, b| ok & b.is_ascii_hexdigit())
}

/// `role_names`: the spec's role names, sorted.
fn check_databases(
    spec: &ComputeSpec,
    ctx: &ValidationContext,
    role_names: &[&str],
    out: &mut Vec<SpecProblem>,
) {
    let renamed: Vec<&str> = spec
        .delta_ops()
        .iter()
        .filter(|op| op.action == DeltaAction::RenameRole)
        .filter_map(|op| op.new_name.as_deref())
        .collect();
    let is_owner = |name: &str| {
        role_names.binary_search(&name).is_ok() || name == ctx.superuser || renamed.contains(&name)
    };
    let mut seen = BTreeSet::new();
    for (i, db) in spec.cluster.databases.iter().enumerate() {
        let path = |field: &str| format!("$.cluster.databases[{i}].{field}");
        check_name(&db.name, || path("name"), out);
        if !seen.insert(db.name.as_str()) {
            out.push(SpecProblem::new(
                path("name"),
                format!("duplicate database name {:?}", db.name),
            ));
        }
        check_name(&db.owner, || path("owner"), out);
        if !is_owner(db.owner.as_str()) {
            out.push(SpecProblem::new(
                path("owner"),
                format!(
                    "owner {:?} is not a role of the spec nor the superuser {:?}; add it to cluster.roles",
                    db.owner, ctx.superuser
                ),
            ));
        }
        if let Some(opts) = &db.options {
            check_options(opts, &path("options"), false, out);
        }
        for (j, ext) in db.extensions.iter().enumerate() {
            let epath = |field: &str| path(&format!("extensions[{j}].{field}"));
            check_name(&ext.name, || epath("name"), out);
            if let Some(s) = &ext.schema {
                check_name(s, || epath("schema"), out);
            }
            if let Some(v) = &ext.version {
                check_value(v, || epath("version"), out);
            }
        }
    }
}

fn check_deltas(spec: &ComputeSpec, role_names: &[&str], out: &mut Vec<SpecProblem>) {
    for (i, op) in spec.delta_ops().iter().enumerate() {
        let path = |field: &str| format!("$.delta_operations[{i}].{field}");
        check_name(&op.name, || path("name"), out);
        let is_rename = matches!(op.action, DeltaAction::RenameDb | DeltaAction::RenameRole);
        match (&op.new_name, is_rename) {
            (None, true) => out.push(SpecProblem::new(
                path("new_name"),
                "a rename needs new_name",
            )),
            (Some(n), true) => check_name(n, || path("new_name"), out),
            _ => {}
        }
        let listed = match op.action {
            DeltaAction::DeleteRole | DeltaAction::RenameRole => {
                role_names.binary_search(&op.name.as_str()).is_ok()
            }
            DeltaAction::DeleteDb | DeltaAction::RenameDb => {
                spec.cluster.databases.iter().any(|d| d.name == op.name)
            }
        };
        if listed {
            out.push(SpecProblem::new(
                path("name"),
                format!(
                    "{:?} is also listed in cluster; a delete or rename of it would be undone on every apply; remove the delta or the entry",
                    op.name
                ),
            ));
        }
    }
}

fn check_options(opts: &[GenericOption], path: &str, guc: bool, out: &mut Vec<SpecProblem>) {
    for (i, opt) in opts.iter().enumerate() {
        let p = |field: &str| format!("{path}[{i}].{field}");
        if guc && !is_guc_name(&opt.name) {
            out.push(SpecProblem::new(
                p("name"),
                format!("{:?} is not a valid setting name (letters, digits, _ and $, dotted for custom settings)", opt.name),
            ));
        } else if !guc
            && (opt.name.is_empty()
                || !opt
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'_'))
        {
            out.push(SpecProblem::new(
                p("name"),
                format!("{:?} is not a valid option name", opt.name),
            ));
        }
        if !VARTYPES.contains(&opt.vartype.as_str()) {
            out.push(SpecProblem::new(
                p("vartype"),
                format!(
                    "unknown vartype {:?}; expected one of {}",
                    opt.vartype,
                    VARTYPES.join(", ")
                ),
            ));
        }
        if let Some(v) = &opt.value {
            check_value(v, || p("value"), out);
        }
    }
}

/// A GUC name as Postgres accepts it: identifier parts joined by dots.
pub fn is_guc_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        })
}

/// Checks a name; `path` is formatted only when there is a problem, so that
/// validating a spec with thousands of roles allocates nothing per valid name.
fn check_name(name: &str, path: impl Fn() -> String, out: &mut Vec<SpecProblem>) {
    if name.is_empty() {
        out.push(SpecProblem::new(path(), "name is empty"));
    } else if name.len() > MAX_NAME_BYTES {
        out.push(SpecProblem::new(
            path(),
            format!(
                "name is {} bytes; Postgres names are at most {MAX_NAME_BYTES} bytes",
                name.len()
            ),
        ));
    }
    if name.contains('\0') {
        out.push(SpecProblem::new(path(), "name contains a NUL byte"));
    }
}

fn check_value(value: &str, path: impl Fn() -> String, out: &mut Vec<SpecProblem>) {
    if value.contains('\0') {
        out.push(SpecProblem::new(path(), "value contains a NUL byte"));
    }
    if value.contains(['\n', '\r']) {
        out.push(SpecProblem::new(path(), "value contains a newline"));
    }
}
