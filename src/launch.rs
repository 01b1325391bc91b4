//! The production binary's edge: flags -> [`NodeConfig`], OS signals, exit
//! code. The wiring itself (supervisor, APIs, monitors, spec delivery,
//! linger, drain) is [`compute_ctl::node`], which the simulator runs too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use compute_ctl::cli::Args;
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome, TerminateMode};
use compute_ctl::env::TokioEnv;
use compute_ctl::http::Auth;
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
        pgbin: find_pgbin(&args.pgbin)?,
        conn,
        http_addr: SocketAddr::new(args.http_host, args.http_port),
        compute_id: args.compute_id.clone(),
        ready_timeout: args.ready_timeout(),
        shutdown_timeout: args.shutdown_timeout(),
        activity_interval: args.activity_interval(),
        cgroup_procs: None,
    })
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

/// The spec given on the command line, if any.
fn initial_spec(args: &Args, ctx: &ValidationContext) -> anyhow::Result<Option<ComputeSpec>> {
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

/// The JWT verifier of `--jwks`; without it auth is off (and we say so).
fn load_auth(args: &Args) -> anyhow::Result<Option<Auth>> {
    let Some(path) = &args.jwks else {
        tracing::warn!(
            "no --jwks given: HTTP API authentication is OFF, anyone who can reach the port may configure or terminate this compute; pass --jwks FILE in production"
        );
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the JWKS file {} (--jwks)", path.display()))?;
    let auth = Auth::from_jwks(&text, args.compute_id.clone())
        .with_context(|| format!("cannot use the JWKS file {} (--jwks)", path.display()))?;
    tracing::info!(
        keys = auth.key_count(),
        compute_id = ?args.compute_id,
        "HTTP API authentication on: /configure, /terminate and /dbs_and_roles need a bearer token"
    );
    Ok(Some(auth))
}

/// Runs the compute until it terminates or fails: flags to a
/// [`NodeConfig`], then [`compute_ctl::node`] does the wiring.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = validation_context(&args);
    let params = params(&args)?;
    let spec = initial_spec(&args, &ctx)?;
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
    let config = NodeConfig {
        params,
        spec,
        spec_source,
        validation: ctx,
        auth,
        serve_limits: args.serve_limits(),
        internal_http_port: args.internal_http_port,
        autoscaling,
        terminated_linger: args.terminated_linger(),
        http_drain_timeout: HTTP_DRAIN_TIMEOUT,
    };
    let node = Node::bind(TokioEnv::new(), config).await?;
    let stop = spawn_signal_handler(node.compute().clone())?;
    tracing::info!(
        pgdata = %node.compute().params.pgdata.display(),
        postgres = %node.compute().params.pgbin.display(),
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
