//! Wiring of the production binary: flags -> params, the supervisor on
//! [`TokioEnv`], spec delivery, OS signals, exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use compute_ctl::cli::Args;
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome, TerminateMode};
use compute_ctl::env::TokioEnv;
use compute_ctl::spec::{ComputeSpec, ValidationContext};
use compute_ctl::spec_source::{FetchPolicy, SpecSource, fetch_spec};
use compute_ctl::state::ComputeStatus;

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
        activity_interval: Duration::from_secs(5),
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

/// Runs the compute until it terminates or fails.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = validation_context(&args);
    let params = params(&args)?;
    let spec = initial_spec(&args, &ctx)?;
    let source = match (&args.control_plane_uri, &args.compute_id) {
        (Some(uri), Some(id)) => Some(SpecSource::new(uri, id)?),
        _ => None,
    };
    let compute = Compute::new(TokioEnv::new(), params);
    spawn_signal_handler(compute.clone())?;
    tracing::info!(
        pgdata = %compute.params.pgdata.display(),
        postgres = %compute.params.pgbin.display(),
        pid = std::process::id(),
        "compute_ctl started"
    );
    if let Some(spec) = spec {
        compute
            .submit(spec)
            .context("cannot accept the initial spec")?;
    }
    let fetcher = source.map(|s| tokio::spawn(fetch_into(compute.clone(), s, ctx)));
    let outcome = compute.run().await;
    if let Some(f) = fetcher {
        f.abort();
    }
    match outcome {
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

/// Fetches the spec from the control plane and submits it, unless a spec
/// arrives another way first (or the compute is stopped); a fetch that gives
/// up fails the compute.
async fn fetch_into(compute: Arc<Compute<TokioEnv>>, source: SpecSource, ctx: ValidationContext) {
    tracing::info!(
        url = source.url(),
        "waiting for a spec from the control plane"
    );
    let mut rx = compute.subscribe();
    let superseded = rx.wait_for(|st| st.status != ComputeStatus::Empty);
    let policy = FetchPolicy::default();
    tokio::select! {
        biased;
        _ = superseded => {}
        fetched = fetch_spec(&compute.env, &source, &ctx, &policy) => match fetched {
            Ok(spec) => {
                if let Err(e) = compute.submit(spec) {
                    tracing::warn!(error = %e, "spec from the control plane not used");
                }
            }
            Err(e) => compute.fail(format!("cannot get a spec from the control plane: {e}")),
        },
    }
}

/// SIGTERM and SIGINT ask for a fast shutdown.
fn spawn_signal_handler(compute: Arc<Compute<TokioEnv>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: shutting down");
            let _ = compute.request_terminate(TerminateMode::Fast);
        }
    });
    Ok(())
}
