//! The production binary's edge: flags -> [`NodeConfig`], OS signals, exit
//! code. The wiring itself (supervisor, APIs, monitors, spec delivery,
//! linger, drain) is [`compute_ctl::node`], which the simulator runs too.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use compute_ctl::cli::Args;
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome, TerminateMode};
use compute_ctl::config_envelope::ConfigEnvelope;
use compute_ctl::env::TokioEnv;
use compute_ctl::http::auth::TokenRules;
use compute_ctl::http::{Auth, AuthSlot};
use compute_ctl::node::{Autoscaling, HTTP_DRAIN_TIMEOUT, Node, NodeConfig, StopSignal};
use compute_ctl::spec::{ComputeSpec, ValidationContext};
use compute_ctl::spec_source::SpecSource;
use compute_ctl::vm_monitor;

/// What validation may assume exists: the superuser of `--connstr`.
pub fn validation_context(args: &Args) -> ValidationContext {
    args.connstr
        .as_deref()
        .and_then(|c| ConnTarget::parse(c).ok())
        .map(|t| ValidationContext { superuser: t.user })
        .unwrap_or_default()
}

fn params(args: &Args) -> anyhow::Result<ComputeParams> {
    let pgdata = args.pgdata.clone().context("--pgdata is required")?;
    // Absolute, because Postgres and its tools run from `/`.
    let pgdata = std::path::absolute(&pgdata)
        .with_context(|| format!("invalid --pgdata {}", pgdata.display()))?;
    let connstr = args.connstr.as_deref().context("--connstr is required")?;
    let conn = ConnTarget::parse(connstr).context("invalid --connstr")?;
    Ok(ComputeParams {
        pgdata,
        pgbin: find_pgbin(&args.pgbin_or(std::env::var_os("POSTGRES_PATH")))?,
        conn,
        http_addr: SocketAddr::new(http_host(args)?, args.http_port),
        compute_id: args.compute_id.clone(),
        ready_timeout: args.ready_timeout(),
        shutdown_timeout: args.shutdown_timeout(),
        activity_interval: args.activity_interval(),
        cgroup_procs: None,
        advertise: args.advertise_addr.clone(),
        quorum_deadline: Duration::from_secs(args.quorum_deadline_secs),
        max_ready_lag: args.max_ready_lag,
        tls: tls_paths(args)?,
        settings_cache: (!args.no_settings_cache).then(|| args.settings_cache.clone()),
    })
}

/// `--write-settings-cache`: asks the `-b` binary for its listing and the
/// base unit of every setting that has one, and writes them to
/// `--settings-cache`; no Postgres is started and no PGDATA is touched.
pub fn write_settings_cache(args: &Args) -> anyhow::Result<String> {
    let pgbin = find_pgbin(&args.pgbin_or(std::env::var_os("POSTGRES_PATH")))?;
    let params = ComputeParams {
        pgbin,
        settings_cache: Some(args.settings_cache.clone()),
        // Never used: the cache is filled from the binary alone.
        pgdata: PathBuf::from("/nonexistent/compute_ctl/write-settings-cache"),
        conn: ConnTarget::parse("postgresql://cloud_admin@127.0.0.1:1/postgres")
            .context("the placeholder connection string")?,
        http_addr: SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0),
        compute_id: None,
        ready_timeout: args.ready_timeout(),
        shutdown_timeout: args.shutdown_timeout(),
        activity_interval: args.activity_interval(),
        cgroup_procs: None,
        advertise: None,
        quorum_deadline: Duration::from_secs(args.quorum_deadline_secs),
        max_ready_lag: None,
        tls: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let compute = Compute::new(TokioEnv::new(), params);
    let filled = rt.block_on(compute.fill_settings_cache())?;
    Ok(filled)
}

/// The certificate pair of `--tls-cert`/`--tls-key`, else of `-c`'s
/// `compute_ctl_config.tls` (Neon's field); the flags win when both are
/// given.
fn tls_paths(args: &Args) -> anyhow::Result<Option<compute_ctl::params::TlsPaths>> {
    let from_config = config_envelope(args)?.and_then(|c| c.tls);
    Ok(match (args.tls_paths(), from_config) {
        (Some(flags), Some(config)) => {
            if flags != config {
                tracing::info!(
                    cert = %flags.cert_path.display(),
                    key = %flags.key_path.display(),
                    ignored_cert = %config.cert_path.display(),
                    ignored_key = %config.key_path.display(),
                    "TLS: --tls-cert/--tls-key win over compute_ctl_config.tls of --config"
                );
            }
            Some(flags)
        }
        (flags, config) => flags.or(config),
    })
}

/// `--http-host`, else 0.0.0.0 when a key set is given at start and
/// 127.0.0.1 when not: an API without authentication is reachable from other
/// hosts only when the operator asks for it.
fn http_host(args: &Args) -> anyhow::Result<IpAddr> {
    if let Some(host) = args.http_host {
        return Ok(host);
    }
    let keys = args.jwks.is_some() || config_envelope(args)?.is_some_and(|c| c.jwks.is_some());
    Ok(if keys {
        IpAddr::from([0, 0, 0, 0])
    } else {
        tracing::info!(
            "no key set given: the HTTP API listens on 127.0.0.1 only; pass --jwks (or a --config with compute_ctl_config.jwks), or --http-host 0.0.0.0 to accept other hosts without authentication"
        );
        IpAddr::from([127, 0, 0, 1])
    })
}

/// Neon's `-c/--config` envelope, read and validated.
fn config_envelope(args: &Args) -> anyhow::Result<Option<ConfigEnvelope>> {
    let Some(path) = &args.config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {} (--config)", path.display()))?;
    let envelope = ConfigEnvelope::parse(&text, &validation_context(args))
        .with_context(|| format!("cannot use the config file {} (--config)", path.display()))?;
    Ok(Some(envelope))
}

/// Logs, once at start, each of Neon's flags that does nothing here and why.
fn note_neon_only_flags(args: &Args) {
    let set = |var: &str| std::env::var_os(var).is_some();
    for note in args.not_applicable_notes(set("INSTANCE_ID"), set("COMPUTE_CTL_LOG_DIRECTORY")) {
        tracing::info!("{note}");
    }
}

/// Resolves `-b`: a path is taken as is; a bare name is looked up in PATH and
/// then in Debian's `/usr/lib/postgresql/*/bin`.
fn find_pgbin(pgbin: &std::path::Path) -> anyhow::Result<PathBuf> {
    if pgbin.components().count() > 1 {
        if !pgbin.is_file() {
            bail!(
                "postgres binary {} does not exist; pass the path of the postgres server binary with -b",
                pgbin.display()
            );
        }
        return Ok(pgbin.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    dirs.extend(debian);
    dirs.into_iter()
        .map(|d| d.join(pgbin))
        .find(|p| p.is_file())
        .with_context(|| format!("cannot find the {} binary in PATH or /usr/lib/postgresql/*/bin; install PostgreSQL server binaries or pass -b /path/to/postgres", pgbin.display()))
}

/// The spec given on the command line, if any (`-S`, `--spec-json`, or the
/// spec of `-c`'s envelope).
fn initial_spec(args: &Args, ctx: &ValidationContext) -> anyhow::Result<Option<ComputeSpec>> {
    if args.config.is_some() {
        return Ok(config_envelope(args)?.and_then(|c| c.spec));
    }
    let (text, origin) = match (&args.spec_path, &args.spec_json) {
        (Some(p), _) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read spec file {}", p.display()))?,
            p.display().to_string(),
        ),
        (None, Some(j)) => (j.clone(), "--spec-json".to_string()),
        (None, None) => return Ok(None),
    };
    let spec = ComputeSpec::parse_and_validate(&text, ctx)
        .with_context(|| format!("spec from {origin} rejected"))?;
    Ok(Some(spec))
}

/// The JWT verifier of `--jwks` (or of `-c`'s `compute_ctl_config.jwks`),
/// with the token rules of `--require-token-exp`; without keys auth is off
/// (and we say so) until a control plane sends some.
fn load_auth(args: &Args) -> anyhow::Result<AuthSlot> {
    let rules = TokenRules {
        require_exp: args.require_token_exp,
    };
    let text = match (&args.jwks, config_envelope(args)?.and_then(|c| c.jwks)) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the JWKS file {} (--jwks)", path.display()))?,
        (None, Some(jwks)) => jwks.to_string(),
        (None, None) => {
            tracing::warn!(
                "no key set given (--jwks, or compute_ctl_config.jwks in --config): HTTP API authentication is OFF, anyone who can reach the port may configure or terminate this compute; pass --jwks FILE in production"
            );
            return Ok(AuthSlot::with_rules(None, rules));
        }
    };
    let auth = Auth::from_jwks(&text, args.compute_id.clone())
        .context("cannot use the key set of --jwks or --config")?
        .with_rules(rules);
    tracing::info!(
        keys = auth.key_count(),
        compute_id = ?args.compute_id,
        require_exp = rules.require_exp,
        "HTTP API authentication on: every route but /metrics, /autoscaling_metrics, /health and /ready needs a bearer token (as Neon's)"
    );
    Ok(AuthSlot::with_rules(Some(auth), rules))
}

/// Runs the compute until it terminates or fails: flags to a
/// [`NodeConfig`], then [`compute_ctl::node`] does the wiring.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = validation_context(&args);
    note_neon_only_flags(&args);
    let params = params(&args)?;
    let spec = initial_spec(&args, &ctx)?;
    if let Some(s) = &spec {
        let problems = compute_ctl::spec::validate_advertise(s, &params.advertised());
        if !problems.is_empty() {
            eprintln!(
                "the spec cannot be used with this --advertise-addr: {}",
                compute_ctl::spec::SpecProblem::join(&problems)
            );
            return Ok(ExitCode::from(2));
        }
    }
    let spec_source = match (&args.control_plane_uri, &args.compute_id) {
        // Neon's variable: the control plane's credential for the spec pull.
        (Some(uri), Some(id)) => {
            Some(SpecSource::new(uri, id)?.with_token(std::env::var(CONTROL_PLANE_TOKEN_VAR).ok()))
        }
        _ => None,
    };
    let auth = load_auth(&args)?;
    let autoscaling =
        compute_ctl::cli::autoscaling(args.autoscaling, std::env::var_os("AUTOSCALING").as_deref())
            .then(|| Autoscaling {
                cgroup_root: args.cgroup_root.clone(),
                cgroup: args.cgroup.clone(),
                addr: args.vm_monitor_addr,
                meminfo: vm_monitor::MEMINFO.into(),
            });
    let http_tls = match (&params.tls, args.http_tls) {
        (_, false) => None,
        (Some(paths), true) => Some(paths.clone()),
        (None, true) => bail!(
            "--http-tls needs a certificate pair: give --tls-cert and --tls-key, or compute_ctl_config.tls in --config"
        ),
    };
    let config = NodeConfig {
        http_tls,
        params,
        spec,
        spec_source,
        validation: ctx,
        auth,
        serve_limits: args.serve_limits(),
        internal_http_port: args.internal_http_port(),
        pg_init_timeout: args.pg_init_timeout(),
        installed_extensions_interval: Some(Duration::from_secs(
            args.installed_extensions_collection_interval,
        )),
        refresh_after: args.refresh_after(),
        autoscaling,
        terminated_linger: args.terminated_linger(),
        http_drain_timeout: HTTP_DRAIN_TIMEOUT,
    };
    let node = Node::bind(TokioEnv::new(), config).await?;
    let stop = spawn_signal_handler(node.compute().clone())?;
    tracing::info!(
        pgdata = %node.compute().params().pgdata.display(),
        postgres = %node.compute().params().pgbin.display(),
        pid = std::process::id(),
        "compute_ctl started"
    );
    match node.run(stop).await? {
        RunOutcome::Terminated => {
            tracing::info!("terminated");
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Failed(reason) => {
            eprintln!("compute_ctl: compute failed: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Neon's variable holding the bearer token of the spec pull.
const CONTROL_PLANE_TOKEN_VAR: &str = "NEON_CONTROL_PLANE_TOKEN";

/// SIGTERM and SIGINT ask for a fast shutdown.
fn spawn_signal_handler(compute: Arc<Compute<TokioEnv>>) -> anyhow::Result<StopSignal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let signals = StopSignal::new();
    let seen = signals.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: shutting down");
            seen.raise();
            let _ = compute.request_terminate(TerminateMode::Fast);
        }
    });
    Ok(signals)
}
