//! `postgresql.conf` and `pg_hba.conf`, rendered from the spec as pure
//! functions and written atomically through the Env file system.
//!
//! `postgresql.conf`, in this order (later lines win in Postgres):
//! 1. `cluster.postgresql_conf`, verbatim;
//! 2. storage settings from the spec's top-level fields
//!    (`neon.pageserver_connstring`, `neon.safekeepers`, `neon.tenant_id`,
//!    `neon.timeline_id`): custom settings, which vanilla Postgres accepts as
//!    placeholders; for a replica or static compute also the recovery
//!    settings that make storage real for vanilla Postgres:
//!    `primary_conninfo` (the `pageserver_connstring` with
//!    `application_name` = the compute id), `recovery_target_timeline =
//!    'latest'` (follow a failover of the storage onto a new timeline), a
//!    short `wal_retrieve_retry_interval` (a moved or failed upstream is
//!    retried quickly instead of after Postgres' default 5 s) and, for
//!    static, `recovery_target_lsn` with `recovery_target_action = 'pause'`.
//!    All are reloadable except the recovery target, and a mode change is
//!    refused on a running compute, so a move stays a SIGHUP;
//! 3. the managed block: `cluster.settings` in spec order, then `port` and
//!    `listen_addresses`, which the supervisor owns. The `-C` connection
//!    string is authoritative for the port: a different `port` in the spec is
//!    dropped with a warning (the supervisor could not reach Postgres
//!    otherwise). `listen_addresses` is the spec's list when it covers the
//!    `-C` host (`*`, `0.0.0.0` for IPv4, `::` for IPv6, or the host itself),
//!    else the spec's list plus that host, else just that host;
//! 4. `include_if_exists = 'compute_ctl.override.conf'` as the very last
//!    line: the operator's escape hatch, which wins over everything.
//!
//! Values: a `string` vartype is always quoted; other vartypes are written
//! bare only when they are a plain token of the config-file lexer (an
//! identifier, an integer with an optional unit, a decimal), otherwise quoted.
//! Quoting doubles single quotes and escapes backslashes, as Postgres'
//! config-file lexer reads them back. Settings with names that are not GUC
//! names or values with line breaks or NUL (validation rejects both) are
//! skipped with a warning rather than written.
//!
//! `pg_hba.conf`: the supervisor's superuser is trusted over the local socket
//! and loopback and rejected from anywhere else; every other role (the
//! spec's) authenticates with a password from anywhere. We write `all` rather
//! than one line per spec role: `md5` also accepts SCRAM verifiers, roles
//! created by a later reconfigure need no new line, and pg_hba.conf cannot
//! quote every legal role name.

use std::net::IpAddr;

use super::PgError;
use crate::env::Env;
use crate::params::{ComputeParams, ConnTarget};
use crate::spec::{ComputeMode, ComputeSpec, GenericOption, JointQuorum, is_guc_name};

/// The override file included by the last line of `postgresql.conf`.
pub const OVERRIDE_FILE: &str = "compute_ctl.override.conf";

/// First line of the managed block.
pub const MANAGED_BEGIN: &str = "# ---- BEGIN compute_ctl managed block: cluster.settings, port, listen_addresses (rewritten on every configure) ----";
/// Last line of the managed block.
pub const MANAGED_END: &str = "# ---- END compute_ctl managed block ----";

/// `wal_retrieve_retry_interval` of a replica: how soon Postgres retries a
/// failed upstream (its default, 5 s, would sit in the path of a move).
pub const REPLICA_RETRY_INTERVAL: &str = "200ms";

/// `application_name` in `primary_conninfo` when the compute has no id.
pub const DEFAULT_REPLICA_NAME: &str = "compute_ctl";

/// Settings the supervisor owns; the spec's values are merged or overridden.
const OWNED: [&str; 2] = ["port", "listen_addresses"];

/// A rendered `postgresql.conf` and what was overridden or skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConf {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Quotes a value for `postgresql.conf`: `'` doubled, `\` escaped.
pub fn quote_conf_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Whether `v` is read back unchanged when written without quotes: an
/// identifier, an integer with an optional unit (`128MB`), or a decimal.
fn is_bare_token(v: &str) -> bool {
    let ident = |s: &str| {
        let mut b = s.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let unsigned = v.strip_prefix('-').unwrap_or(v);
    let int_with_unit = {
        let n = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        n > 0 && unsigned[n..].bytes().all(|c| c.is_ascii_alphabetic())
    };
    let decimal = match unsigned.split_once('.') {
        Some((a, b)) => digits(a) && digits(b),
        None => false,
    };
    ident(v) || int_with_unit || decimal
}

/// A setting's value as written in `postgresql.conf`.
pub fn render_value(opt_is_string: bool, value: &str) -> String {
    if opt_is_string || !is_bare_token(value) {
        quote_conf_value(value)
    } else {
        value.to_string()
    }
}

/// Whether a value may be written at all (no line breaks, no NUL).
fn writable(value: &str) -> bool {
    !value.contains(['\n', '\r', '\0'])
}

/// Whether the `listen_addresses` list `list` lets Postgres listen on `host`.
fn covers(list: &str, host: &str) -> bool {
    let ip = if host == "localhost" {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse::<IpAddr>().ok()
    };
    list.split(',').map(str::trim).any(|a| {
        a == "*"
            || a == host
            || (a == "0.0.0.0" && ip.is_some_and(|i| i.is_ipv4()))
            || (a == "::" && ip.is_some_and(|i| i.is_ipv6()))
    })
}

/// Renders `postgresql.conf` for `spec`, with `conn` (the `-C` target)
/// deciding `port` and `listen_addresses`. Deterministic: the same inputs
/// give the same bytes.
pub fn render_postgresql_conf(spec: &ComputeSpec, conn: &ConnTarget) -> RenderedConf {
    render_postgresql_conf_as(spec, conn, DEFAULT_REPLICA_NAME)
}

/// `primary_conninfo` for a replica: the source's connection string with
/// `application_name` set to the compute id (so the upstream's
/// `pg_stat_replication` names this compute). A URL gets a query
/// parameter, key=value pairs get one more pair (libpq: the last one wins).
pub fn primary_conninfo(source: &str, application_name: &str) -> String {
    let source = source.trim();
    if source.starts_with("postgresql://") || source.starts_with("postgres://") {
        let value: String =
            url::form_urlencoded::byte_serialize(application_name.as_bytes()).collect();
        let sep = if source.contains('?') { '&' } else { '?' };
        format!("{source}{sep}application_name={value}")
    } else {
        let mut quoted = String::with_capacity(application_name.len() + 2);
        quoted.push('\'');
        for c in application_name.chars() {
            if c == '\'' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('\'');
        format!("{source} application_name={quoted}")
    }
}

/// The recovery settings of a replica or static compute, in the storage
/// section: where to stream from, follow the newest timeline (a failover of
/// the storage), retry a failed upstream quickly, and for a static compute
/// stop (paused, read-only) at its LSN.
fn render_recovery(
    spec: &ComputeSpec,
    application_name: &str,
    text: &mut String,
    warnings: &mut Vec<String>,
) {
    let static_lsn = match &spec.mode {
        ComputeMode::Primary => return,
        ComputeMode::Replica => None,
        ComputeMode::Static(lsn) => Some(lsn.as_str()),
    };
    match spec
        .pageserver_connstring
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        Some(source) => {
            let conninfo = primary_conninfo(source, application_name);
            if writable(&conninfo) {
                text.push_str(&format!(
                    "primary_conninfo = {}\n",
                    quote_conf_value(&conninfo)
                ));
            } else {
                warnings.push(
                    "primary_conninfo skipped: its value contains a line break or NUL".into(),
                );
            }
        }
        None => warnings
            .push("a replica without pageserver_connstring has no upstream to stream from".into()),
    }
    text.push_str("recovery_target_timeline = 'latest'\n");
    text.push_str(&format!(
        "wal_retrieve_retry_interval = '{REPLICA_RETRY_INTERVAL}'\n"
    ));
    if let Some(lsn) = static_lsn {
        if writable(lsn) {
            text.push_str(&format!(
                "recovery_target_lsn = {}\n",
                quote_conf_value(lsn)
            ));
            text.push_str("recovery_target_action = 'pause'\n");
        }
    }
}

/// [`render_postgresql_conf`] for a compute whose replica connection is
/// named `application_name` (the compute id).
pub fn render_postgresql_conf_as(
    spec: &ComputeSpec,
    conn: &ConnTarget,
    application_name: &str,
) -> RenderedConf {
    render_conf(spec, conn, application_name, None)
}

/// [`render_postgresql_conf_as`], with the quorum of a safekeeper move in
/// force instead of a majority of `spec`'s safekeepers (which are then the
/// union of both sets, so that `pg_hba.conf` lets all of them stream).
fn render_conf(
    spec: &ComputeSpec,
    conn: &ConnTarget,
    application_name: &str,
    joint: Option<&JointQuorum>,
) -> RenderedConf {
    let mut text = String::new();
    let mut warnings = Vec::new();
    text.push_str(
        "# postgresql.conf written by compute_ctl from the compute spec. Do not edit:\n\
         # it is rewritten on every start and configure. Local overrides belong in\n",
    );
    text.push_str(&format!(
        "# {OVERRIDE_FILE}, included by the last line.\n\n"
    ));

    text.push_str("# ---- cluster.postgresql_conf (verbatim) ----\n");
    if let Some(conf) = &spec.cluster.postgresql_conf {
        text.push_str(conf);
        if !conf.is_empty() && !conf.ends_with('\n') {
            text.push('\n');
        }
    }

    text.push_str("\n# ---- storage (pageserver_connstring, safekeeper_connstrings, tenant_id, timeline_id) ----\n");
    let safekeepers = spec.safekeeper_connstrings.join(",");
    let storage = [
        (
            "neon.pageserver_connstring",
            spec.pageserver_connstring.as_deref(),
        ),
        (
            "neon.safekeepers",
            Some(safekeepers.as_str()).filter(|s| !s.is_empty()),
        ),
        ("neon.tenant_id", spec.tenant_id.as_deref()),
        ("neon.timeline_id", spec.timeline_id.as_deref()),
    ];
    for (name, value) in storage {
        match value {
            Some(v) if writable(v) => {
                text.push_str(&format!("{name} = {}\n", quote_conf_value(v)));
            }
            Some(_) => warnings.push(format!(
                "{name} skipped: its value contains a line break or NUL"
            )),
            None => {}
        }
    }
    render_recovery(spec, application_name, &mut text, &mut warnings);

    text.push('\n');
    text.push_str(MANAGED_BEGIN);
    text.push('\n');
    let mut spec_listen: Option<&str> = None;
    let quorum = quorum_names(spec);
    let mut spec_sync_commit: Option<&str> = None;
    for opt in spec.settings() {
        if quorum.is_some() {
            match opt.name.to_ascii_lowercase().as_str() {
                "synchronous_standby_names" => {
                    warnings.push("the spec's synchronous_standby_names is ignored: a primary with safekeepers waits for a majority of them".into());
                    continue;
                }
                "synchronous_commit" => {
                    spec_sync_commit = opt.value.as_deref();
                    continue;
                }
                _ => {}
            }
        }
        render_setting(opt, conn, &mut text, &mut warnings, &mut spec_listen);
    }
    text.push_str(&format!("port = {}\n", conn.port));
    let listen = match spec_listen {
        Some(l) if covers(l, &conn.host) => l.to_string(),
        Some(l) => {
            warnings.push(format!(
                "listen_addresses {l:?} from the spec does not include the --connstr host {}; it was added",
                conn.host
            ));
            format!("{l},{}", conn.host)
        }
        None => conn.host.clone(),
    };
    text.push_str(&format!(
        "listen_addresses = {}\n",
        quote_conf_value(&listen)
    ));
    if let Some(names) = &quorum {
        let standby_names = match joint {
            Some(j) => j.standby_names(),
            None => crate::spec::synchronous_standby_names(names),
        };
        render_quorum(&standby_names, spec_sync_commit, &mut text, &mut warnings);
    }
    text.push_str(MANAGED_END);
    text.push('\n');
    text.push_str(&format!(
        "include_if_exists = {}\n",
        quote_conf_value(OVERRIDE_FILE)
    ));
    RenderedConf { text, warnings }
}

/// The safekeepers' names when `spec` is a primary with safekeepers (its
/// commits then wait for a majority of them); `None` otherwise.
pub fn quorum_names(spec: &ComputeSpec) -> Option<Vec<String>> {
    if spec.mode != ComputeMode::Primary || spec.safekeeper_connstrings.is_empty() {
        return None;
    }
    let names: Vec<String> = spec
        .safekeeper_connstrings
        .iter()
        .filter_map(|c| crate::spec::Endpoint::parse(c, "-").ok())
        .map(|e| crate::spec::safekeeper_name(&e.host, e.port))
        .collect();
    Some(names)
}

/// `synchronous_standby_names = 'ANY q (...)'` and `synchronous_commit` at
/// least `on` (the spec's `remote_apply` is kept; `off`, `local` and
/// `remote_write` would acknowledge a commit no majority has flushed).
fn render_quorum(
    standby_names: &str,
    spec_sync_commit: Option<&str>,
    text: &mut String,
    warnings: &mut Vec<String>,
) {
    text.push_str(&format!(
        "synchronous_standby_names = {}\n",
        quote_conf_value(standby_names)
    ));
    let commit = match spec_sync_commit.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "remote_apply" => "remote_apply",
        Some(v) if v == "on" || v == "true" || v == "yes" || v == "1" => "on",
        Some(v) => {
            warnings.push(format!(
                "the spec's synchronous_commit = {v} is raised to on: a primary with safekeepers acknowledges a commit only once a majority flushed it"
            ));
            "on"
        }
        None => "on",
    };
    let commit = if crate::planted::active(crate::planted::Bug::AckBeforeQuorum) {
        "local"
    } else {
        commit
    };
    text.push_str(&format!("synchronous_commit = {commit}\n"));
}

/// Renders one `cluster.settings` entry into the managed block.
fn render_setting<'a>(
    opt: &'a GenericOption,
    conn: &ConnTarget,
    text: &mut String,
    warnings: &mut Vec<String>,
    spec_listen: &mut Option<&'a str>,
) {
    if !is_guc_name(&opt.name) {
        warnings.push(format!(
            "setting {:?} skipped: not a valid setting name",
            opt.name
        ));
        return;
    }
    let Some(value) = opt.value.as_deref() else {
        text.push_str(&format!(
            "# {}: null in the spec, left at its default\n",
            opt.name
        ));
        return;
    };
    if !writable(value) {
        warnings.push(format!(
            "setting {} skipped: its value contains a line break or NUL",
            opt.name
        ));
        return;
    }
    let lower = opt.name.to_ascii_lowercase();
    if OWNED.contains(&lower.as_str()) {
        if lower == "listen_addresses" {
            *spec_listen = Some(value);
        } else if value.trim() != conn.port.to_string() {
            warnings.push(format!(
                "the spec sets port = {value}, but the --connstr port {} is authoritative; the spec's port is ignored",
                conn.port
            ));
        }
        return;
    }
    text.push_str(&format!(
        "{} = {}\n",
        opt.name,
        render_value(opt.is_string(), value)
    ));
}

/// Renders `pg_hba.conf` for the superuser `superuser`.
pub fn render_pg_hba(superuser: &str) -> Result<String, PgError> {
    render_pg_hba_with(superuser, &[])
}

/// `pg_hba.conf` that also lets the superuser stream WAL (replication
/// only) to the safekeepers at `replication_hosts` (trusted like the
/// loopback: the storage's own addresses). Hosts that are not a plain IP
/// or host name are skipped.
pub fn render_pg_hba_with(
    superuser: &str,
    replication_hosts: &[String],
) -> Result<String, PgError> {
    if superuser.is_empty() || superuser.contains(['"', '\n', '\r', '\0']) {
        return Err(PgError::Config(format!(
            "the --connstr user {superuser:?} cannot be written to pg_hba.conf (empty, or contains a double quote or line break); use a plain role name such as cloud_admin"
        )));
    }
    let su = format!("\"{superuser}\"");
    let mut t = String::from(
        "# pg_hba.conf written by compute_ctl; rewritten on every start and configure.\n\
         # TYPE  DATABASE     USER          ADDRESS        METHOD\n\
         # The supervisor's superuser: trusted over the local socket and loopback only.\n",
    );
    for db in ["all", "replication"] {
        t.push_str(&format!("local   {db:<12} {su:<13} {:<14} trust\n", ""));
        for net in ["127.0.0.1/32", "::1/128"] {
            t.push_str(&format!("host    {db:<12} {su:<13} {net:<14} trust\n"));
        }
    }
    let mut hosts: Vec<String> = replication_hosts
        .iter()
        .filter(|h| !crate::params::is_loopback_host(h))
        .filter_map(|h| hba_address(h))
        .collect();
    hosts.sort();
    hosts.dedup();
    if !hosts.is_empty() {
        t.push_str("# The safekeepers stream WAL from this compute as the superuser.\n");
    }
    for h in hosts {
        t.push_str(&format!("host    replication  {su:<13} {h:<14} trust\n"));
    }
    for net in ["0.0.0.0/0", "::/0"] {
        t.push_str(&format!("host    all          {su:<13} {net:<14} reject\n"));
    }
    t.push_str(
        "# Every other role (the spec's): password authentication from anywhere.\n\
         # md5 also accepts roles whose stored password is a SCRAM verifier.\n",
    );
    t.push_str(&format!(
        "local   all          all           {:<14} md5\n",
        ""
    ));
    for net in ["0.0.0.0/0", "::/0"] {
        t.push_str(&format!(
            "host    all          all           {net:<14} md5\n"
        ));
    }
    Ok(t)
}

/// A host as a `pg_hba.conf` address: an IP with its full mask, a host name
/// as is; `None` for anything else.
fn hba_address(host: &str) -> Option<String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Some(format!("{ip}/32")),
        Ok(IpAddr::V6(ip)) => Some(format!("{ip}/128")),
        Err(_) => (!h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-'))
        .then(|| h.to_string()),
    }
}

/// The addresses `pg_hba.conf` lets stream WAL: each safekeeper's host as
/// written and, for a name, every address it resolves to now. Postgres
/// matches a name in `pg_hba.conf` against the reverse lookup of the
/// client's address, which in Docker or Kubernetes is another name
/// (`sk1.net`, `10-0-0-7.ns.pod...`) than the one in the spec, so a name
/// alone would refuse the safekeeper. An address that changes later (a
/// safekeeper rescheduled) is admitted by the next notify, which resolves
/// again. A name that does not resolve keeps its name line only.
async fn replication_addresses<E: Env>(env: &E, spec: &ComputeSpec) -> Vec<String> {
    let mut out = Vec::new();
    for e in spec
        .safekeeper_connstrings
        .iter()
        .filter_map(|c| crate::spec::Endpoint::parse(c, "-").ok())
    {
        let host = e.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_err() && !crate::params::is_loopback_host(host) {
            match env.resolve(host).await {
                Ok(ips) => out.extend(ips.iter().map(IpAddr::to_string)),
                Err(err) => {
                    tracing::warn!(safekeeper = %host, error = %err, "cannot resolve a safekeeper's host name; pg_hba.conf names it only, which Postgres matches by reverse lookup")
                }
            }
        }
        out.push(e.host);
    }
    out
}

/// Writes `postgresql.conf` and `pg_hba.conf` into PGDATA atomically (temp
/// file, rename; no fsync, since PGDATA never outlives a crash: see
/// [`crate::env::Fs::write_atomic`]); warnings about overridden settings go
/// to the log.
pub async fn write_config<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
) -> Result<(), PgError> {
    write_config_with(env, params, spec, None).await
}

/// [`write_config`] during a safekeeper move: `spec` lists both sets'
/// safekeepers (all may stream) and commits wait for `joint`.
pub async fn write_config_joint<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    joint: &JointQuorum,
) -> Result<(), PgError> {
    write_config_with(env, params, spec, Some(joint)).await
}

async fn write_config_with<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    joint: Option<&JointQuorum>,
) -> Result<(), PgError> {
    let name = params.compute_id.as_deref().unwrap_or(DEFAULT_REPLICA_NAME);
    let mut conf = render_conf(spec, &params.conn, name, joint);
    if params.tls.is_some() {
        conf.text.push_str(super::TLS_CONF);
    }
    for w in &conf.warnings {
        tracing::warn!("postgresql.conf: {w}");
    }
    let sk_hosts = replication_addresses(env, spec).await;
    let hba = render_pg_hba_with(&params.conn.user, &sk_hosts)?;
    for (name, data) in [("postgresql.conf", conf.text), ("pg_hba.conf", hba)] {
        let path = params.pgdata.join(name);
        // An unchanged file is not rewritten (pg_hba.conf never changes after
        // start): a notify then writes one file, not two.
        if env
            .read(&path)
            .await
            .is_ok_and(|current| current == data.as_bytes())
        {
            continue;
        }
        env.write_atomic(&path, data.as_bytes())
            .await
            .map_err(|source| PgError::Io {
                what: "cannot write",
                path,
                source,
            })?;
    }
    Ok(())
}

/// What a fresh `compute_ctl.override.conf` holds.
pub const OVERRIDE_PLACEHOLDER: &str = "# Local overrides of postgresql.conf: compute_ctl includes this file last\n\
     # and never writes it once it exists. PGDATA is recreated on every start.\n";

/// Creates an empty [`OVERRIDE_FILE`] (a comment) unless one exists. An
/// absent file costs every Postgres process a `skipping missing
/// configuration file` log line at every reload, which compute_ctl then
/// reads and forwards: eight lines per notify on an idle compute.
pub async fn write_override_placeholder<E: Env>(
    env: &E,
    params: &ComputeParams,
) -> Result<(), PgError> {
    let path = params.pgdata.join(OVERRIDE_FILE);
    if env.exists(&path).await {
        return Ok(());
    }
    env.write_atomic(&path, OVERRIDE_PLACEHOLDER.as_bytes())
        .await
        .map_err(|source| PgError::Io {
            what: "cannot write",
            path,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_override_placeholder_is_written_once_and_an_operators_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let params = ComputeParams {
            pgdata: dir.path().to_path_buf(),
            ..ComputeParams::unstartable()
        };
        let env = crate::env::TokioEnv::new();
        let path = dir.path().join(OVERRIDE_FILE);
        write_override_placeholder(&env, &params).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            OVERRIDE_PLACEHOLDER
        );
        std::fs::write(&path, "work_mem = '8MB'\n").unwrap();
        write_override_placeholder(&env, &params).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "work_mem = '8MB'\n"
        );
    }

    fn conn(port: u16) -> ConnTarget {
        ConnTarget::parse(&format!(
            "postgresql://cloud_admin@127.0.0.1:{port}/postgres"
        ))
        .unwrap()
    }

    fn spec(json: serde_json::Value) -> ComputeSpec {
        let mut base = serde_json::json!({"format_version": 1.0, "cluster": {}});
        if let (Some(b), Some(j)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in j {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn settings(s: &[(&str, &str, &str)]) -> serde_json::Value {
        serde_json::json!({"settings": s.iter().map(|(n, v, t)| serde_json::json!({"name": n, "value": v, "vartype": t})).collect::<Vec<_>>()})
    }

    #[test]
    fn a_primary_with_safekeepers_waits_for_a_majority_from_the_first_commit() {
        let sks = serde_json::json!(["127.0.0.1:7001", "127.0.0.1:7002", "10.0.0.3:7003"]);
        let mut j = settings(&[
            ("synchronous_commit", "off", "enum"),
            ("synchronous_standby_names", "x", "string"),
        ]);
        let s = spec(serde_json::json!({"safekeeper_connstrings": sks, "cluster": j.clone()}));
        let r = render_postgresql_conf(&s, &conn(55432));
        assert!(r.text.contains(
            "synchronous_standby_names = 'ANY 2 (\"sk_127_0_0_1_7001\", \"sk_127_0_0_1_7002\", \"sk_10_0_0_3_7003\")'\n"
        ));
        assert!(r.text.contains("synchronous_commit = on\n"));
        assert!(!r.text.contains("synchronous_commit = off"));
        assert!(!r.text.contains("= 'x'"));
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        let managed = &r.text[r.text.find(MANAGED_BEGIN).unwrap()..];
        assert!(
            managed.contains("synchronous_commit"),
            "after the spec's settings"
        );
        j["settings"][0]["value"] = "remote_apply".into();
        let s = spec(serde_json::json!({"safekeeper_connstrings": sks, "cluster": j}));
        assert!(
            render_postgresql_conf(&s, &conn(1))
                .text
                .contains("synchronous_commit = remote_apply\n")
        );
        // A replica or a primary without safekeepers: no quorum.
        let s = spec(serde_json::json!({"cluster": {}}));
        assert!(
            !render_postgresql_conf(&s, &conn(1))
                .text
                .contains("synchronous_standby_names")
        );
        let hba = render_pg_hba_with(
            "cloud_admin",
            &[
                "10.0.0.3".into(),
                "127.0.0.1".into(),
                "sk-1.local".into(),
                "bad host".into(),
            ],
        )
        .unwrap();
        assert!(
            hba.contains("host    replication  \"cloud_admin\" 10.0.0.3/32    trust\n"),
            "{hba}"
        );
        assert!(hba.contains("sk-1.local"));
        assert!(!hba.contains("bad host"));
        assert!(hba.find("10.0.0.3/32").unwrap() < hba.find("reject").unwrap());
    }

    #[test]
    fn quoting_doubles_quotes_and_escapes_backslashes() {
        assert_eq!(quote_conf_value("plain"), "'plain'");
        assert_eq!(quote_conf_value("it's"), "'it''s'");
        assert_eq!(quote_conf_value(r"a\b"), r"'a\\b'");
        assert_eq!(
            quote_conf_value(r#"here's a \ and " # not a comment"#),
            r#"'here''s a \\ and " # not a comment'"#
        );
        assert_eq!(quote_conf_value(""), "''");
    }

    #[test]
    fn string_vartype_is_always_quoted_and_others_only_when_needed() {
        assert_eq!(render_value(true, "on"), "'on'");
        assert_eq!(render_value(false, "on"), "on");
        assert_eq!(render_value(false, "128MB"), "128MB");
        assert_eq!(render_value(false, "-1"), "-1");
        assert_eq!(render_value(false, "0.5"), "0.5");
        assert_eq!(render_value(false, "scram-sha-256"), "'scram-sha-256'");
        assert_eq!(render_value(false, "1; evil = 1"), "'1; evil = 1'");
        assert_eq!(render_value(false, ""), "''");
        assert_eq!(render_value(false, "-"), "'-'");
        assert_eq!(render_value(false, "1.2.3"), "'1.2.3'");
    }

    #[test]
    fn sections_come_in_order_and_the_include_is_last() {
        let mut s = spec(serde_json::json!({
            "pageserver_connstring": "host=storage port=6400",
            "safekeeper_connstrings": ["sk1:5454", "sk2:5454"],
            "tenant_id": "t1",
            "timeline_id": "tl1",
        }));
        s.cluster.postgresql_conf = Some("fsync = off".into());
        s.cluster.settings =
            spec(serde_json::json!({"cluster": settings(&[("work_mem", "4MB", "string")])}))
                .cluster
                .settings;
        let r = render_postgresql_conf(&s, &conn(56000));
        let pos = |needle: &str| {
            r.text
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} missing:\n{}", r.text))
        };
        let order = [
            "fsync = off\n",
            "neon.pageserver_connstring = 'host=storage port=6400'\n",
            "neon.safekeepers = 'sk1:5454,sk2:5454'\n",
            "neon.tenant_id = 't1'\n",
            "neon.timeline_id = 'tl1'\n",
            MANAGED_BEGIN,
            "work_mem = '4MB'\n",
            "port = 56000\n",
            "listen_addresses = '127.0.0.1'\n",
            MANAGED_END,
        ];
        for w in order.windows(2) {
            assert!(
                pos(w[0]) < pos(w[1]),
                "{:?} must come before {:?}",
                w[0],
                w[1]
            );
        }
        assert!(
            r.text
                .ends_with("include_if_exists = 'compute_ctl.override.conf'\n")
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn rendering_is_deterministic() {
        let s: ComputeSpec =
            serde_json::from_str(include_str!("../../fixtures/spec.json")).unwrap();
        let a = render_postgresql_conf(&s, &conn(56001));
        let b = render_postgresql_conf(&s.clone(), &conn(56001));
        assert_eq!(a, b);
        assert_eq!(
            render_pg_hba("cloud_admin").unwrap(),
            render_pg_hba("cloud_admin").unwrap()
        );
        assert!(a.text.contains("shared_buffers = '128MB'\n"));
        assert!(a.text.contains("max_connections = 100\n"));
    }

    #[test]
    fn connstr_port_wins_over_the_spec_port_with_a_warning() {
        let s = spec(serde_json::json!({"cluster": settings(&[("port", "5432", "integer")])}));
        let r = render_postgresql_conf(&s, &conn(56002));
        assert!(!r.text.contains("port = 5432"));
        assert_eq!(r.text.matches("\nport = ").count(), 1);
        assert!(r.text.contains("port = 56002\n"));
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("5432") && r.warnings[0].contains("56002"));
        // The same port is no conflict.
        let s = spec(serde_json::json!({"cluster": settings(&[("port", "56002", "integer")])}));
        assert!(render_postgresql_conf(&s, &conn(56002)).warnings.is_empty());
    }

    #[test]
    fn listen_addresses_always_include_the_connstr_host() {
        let render = |l: &str| {
            let s = spec(
                serde_json::json!({"cluster": settings(&[("listen_addresses", l, "string")])}),
            );
            render_postgresql_conf(&s, &conn(56003))
        };
        assert!(render("*").text.contains("listen_addresses = '*'\n"));
        assert!(
            render("0.0.0.0")
                .text
                .contains("listen_addresses = '0.0.0.0'\n")
        );
        let r = render("10.0.0.5");
        assert!(r.text.contains("listen_addresses = '10.0.0.5,127.0.0.1'\n"));
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.text.matches("\nlisten_addresses = ").count(), 1);
    }

    #[test]
    fn unwritable_settings_are_skipped_with_a_warning() {
        let s = spec(serde_json::json!({"cluster": settings(&[
            ("bad name", "1", "integer"),
            ("work_mem", "1\nshared_preload_libraries = 'evil'", "string"),
        ])}));
        let r = render_postgresql_conf(&s, &conn(56004));
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert!(!r.text.contains("evil") && !r.text.contains("bad name"));
    }

    #[test]
    fn a_replica_streams_from_its_storage_under_the_compute_id() {
        let s = spec(serde_json::json!({
            "mode": "Replica",
            "pageserver_connstring": "host=storage port=6400 user=cloud_admin",
        }));
        let r = render_postgresql_conf_as(&s, &conn(56005), "compute-1");
        assert!(r.text.contains(
            "primary_conninfo = 'host=storage port=6400 user=cloud_admin application_name=''compute-1'''\n"
        ), "{}", r.text);
        assert!(r.text.contains("recovery_target_timeline = 'latest'\n"));
        assert!(r.text.contains("wal_retrieve_retry_interval = '200ms'\n"));
        assert!(!r.text.contains("recovery_target_lsn"));
        // The recovery settings sit before the managed block, which may override them.
        assert!(r.text.find("primary_conninfo").unwrap() < r.text.find(MANAGED_BEGIN).unwrap());
        let st = spec(serde_json::json!({
            "mode": {"Static": "0/16B3748"},
            "pageserver_connstring": "postgresql://cloud_admin@storage:6400/postgres?sslmode=disable",
        }));
        let r = render_postgresql_conf_as(&st, &conn(56005), "a b&c");
        assert!(r.text.contains(
            "primary_conninfo = 'postgresql://cloud_admin@storage:6400/postgres?sslmode=disable&application_name=a+b%26c'\n"
        ), "{}", r.text);
        assert!(
            r.text
                .contains("recovery_target_lsn = '0/16B3748'\nrecovery_target_action = 'pause'\n")
        );
        // A primary gets none of it.
        let p = spec(serde_json::json!({"pageserver_connstring": "host=storage"}));
        let r = render_postgresql_conf_as(&p, &conn(56005), "compute-1");
        assert!(!r.text.contains("primary_conninfo") && !r.text.contains("recovery_target"));
    }

    #[test]
    fn primary_conninfo_quotes_the_name_for_libpq() {
        assert_eq!(
            primary_conninfo("host=h", "it's\\"),
            "host=h application_name='it\\'s\\\\'"
        );
        assert_eq!(
            primary_conninfo("postgres://u@h/db", "c1"),
            "postgres://u@h/db?application_name=c1"
        );
    }

    #[test]
    fn hba_trusts_the_superuser_only_locally() {
        let hba = render_pg_hba("cloud_admin").unwrap();
        let lines: Vec<Vec<&str>> = hba
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        for l in &lines {
            let trusted = l.last() == Some(&"trust");
            if trusted {
                assert_eq!(l[2], "\"cloud_admin\"");
                assert!(
                    l[0] == "local" || l[3] == "127.0.0.1/32" || l[3] == "::1/128",
                    "{l:?}"
                );
            }
        }
        assert!(
            lines
                .iter()
                .any(|l| l[..] == ["host", "all", "all", "0.0.0.0/0", "md5"])
        );
        // The superuser's reject lines come before the catch-all password lines.
        let reject = hba.find("reject").unwrap();
        assert!(reject < hba.find("0.0.0.0/0      md5").unwrap());
        assert!(render_pg_hba("a\"b").is_err());
    }
}
