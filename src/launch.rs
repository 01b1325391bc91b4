//! Wiring of the production binary: flags -> params, the supervisor on
//! [`TokioEnv`], the HTTP API and the activity monitor beside it, spec
//! delivery, OS signals, exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use compute_ctl::cli::Args;
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome, TerminateMode};
use compute_ctl::env::{Clock, Net, TokioEnv, timeout};
use compute_ctl::http::{self, Auth, AuthSlot};
use compute_ctl::monitor;
use compute_ctl::spec::{ComputeSpec, ValidationContext};
use compute_ctl::spec_source::{FetchPolicy, SpecSource};
use compute_ctl::state::ComputeStatus;
use compute_ctl::vm_monitor::{self, Cgroup, VmMonitor};

/// How long requests in flight may take to finish once the compute has
/// stopped (e.g. the 500 of a failed first configure, the 200 of a terminate).
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
        max_ready_lag: args.max_ready_lag,
        tls: args.tls_paths(),
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

/// Runs the compute until it terminates or fails.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = validation_context(&args);
    let mut params = params(&args)?;
    let spec = initial_spec(&args, &ctx)?;
    let source = match (&args.control_plane_uri, &args.compute_id) {
        // Neon's variable: the control plane's credential for the spec pull.
        (Some(uri), Some(id)) => {
            Some(SpecSource::new(uri, id)?.with_token(std::env::var(CONTROL_PLANE_TOKEN_VAR).ok()))
        }
        _ => None,
    };
    let auth = AuthSlot::new(load_auth(&args)?);
    let env = TokioEnv::new();
    let autoscaling =
        compute_ctl::cli::autoscaling(args.autoscaling, std::env::var_os("AUTOSCALING").as_deref());
    let cgroup = if autoscaling {
        let cg = Cgroup::locate(&env, &args.cgroup_root, &args.cgroup)
            .await
            .context("AUTOSCALING is set, but the vm-monitor cannot use its cgroup")?;
        params.cgroup_procs = Some(cg.procs_path());
        Some(cg)
    } else {
        None
    };
    // Listen before anything else happens, so that a busy port fails fast and
    // the API is up before the first spec is applied.
    let addr = params.http_addr;
    let listener = env.bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the HTTP API; is another compute_ctl or another program using that port? pick a free one with --http-port"
        )
    })?;
    tracing::info!(%addr, "HTTP API listening");
    let vm_listener = match &cgroup {
        Some(_) => {
            let addr = args.vm_monitor_addr;
            Some(env.bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the vm-monitor; is another program using that port? pick a free one with --vm-monitor-addr")
            })?)
        }
        None => None,
    };
    let compute = Compute::new(env, params);
    let signals = spawn_signal_handler(compute.clone())?;
    tracing::info!(
        pgdata = %compute.params.pgdata.display(),
        postgres = %compute.params.pgbin.display(),
        pid = std::process::id(),
        "compute_ctl started"
    );
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_with_limits(
        listener,
        http::router_with_auth(compute.clone(), auth.clone()),
        args.serve_limits(),
        async move {
            let _ = http_stopped.await;
        },
    ));
    if let Some(port) = args.internal_http_port {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = compute.env.bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the internal HTTP API; pick a free port with --internal-http-port")
        })?;
        tracing::info!(%addr, "internal HTTP API listening (loopback only)");
        tokio::spawn(http::serve::<TokioEnv>(
            listener,
            http::internal_router(compute.clone()),
            std::future::pending(),
        ));
    }
    tokio::spawn(monitor::run(compute.clone()));
    compute.watch_tls();
    if let (Some(cg), Some(listener)) = (cgroup, vm_listener) {
        let mon = VmMonitor::start(&compute, cg, vm_monitor::MEMINFO.into())
            .await
            .context("cannot start the vm-monitor")?;
        tracing::info!(addr = %args.vm_monitor_addr, "vm-monitor listening (websocket at GET /monitor)");
        tokio::spawn(async move {
            if let Err(e) =
                vm_monitor::serve::<TokioEnv>(listener, mon, std::future::pending()).await
            {
                tracing::error!(error = %e, "vm-monitor server stopped");
            }
        });
    }
    if let Some(spec) = spec {
        compute
            .submit(spec)
            .context("cannot accept the initial spec")?;
    }
    let fetcher = source.map(|s| tokio::spawn(fetch_into(compute.clone(), s, ctx, auth)));
    let outcome = compute.run().await;
    if let Some(f) = fetcher {
        f.abort();
    }
    if outcome == RunOutcome::Terminated && !signals.received() {
        linger(&compute, args.terminated_linger(), &signals).await;
    }
    // Stop accepting, and let the responses in flight be delivered.
    let _ = stop_http.send(());
    match timeout(&compute.env, HTTP_DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!(
            "HTTP requests still open {HTTP_DRAIN_TIMEOUT:?} after the compute stopped; exiting anyway"
        ),
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

/// Neon's variable holding the bearer token of the spec pull.
const CONTROL_PLANE_TOKEN_VAR: &str = "NEON_CONTROL_PLANE_TOKEN";

/// After a terminate over HTTP: keep answering for `d` (Neon's control
/// plane reads the `lsn` and may repeat the terminate), unless a signal
/// asks us to go.
async fn linger(compute: &Compute<TokioEnv>, d: Duration, signals: &Signals) {
    if d.is_zero() {
        return;
    }
    tracing::info!(
        seconds = d.as_secs(),
        "terminated; the HTTP API keeps answering a while (--terminated-linger-secs)"
    );
    tokio::select! {
        biased;
        () = signals.wait() => {}
        () = compute.env.sleep(d) => {}
    }
}

/// Fetches the spec from the control plane and submits it, unless a spec
/// arrives another way first (or the compute is stopped); a fetch that gives
/// up fails the compute. A key set sent with the spec replaces auth's.
async fn fetch_into(
    compute: Arc<Compute<TokioEnv>>,
    source: SpecSource,
    ctx: ValidationContext,
    auth: AuthSlot,
) {
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
        fetched = compute_ctl::spec_source::fetch(&compute.env, &source, &ctx, &policy) => match fetched {
            Ok(fetched) => {
                if let Some(jwks) = &fetched.jwks {
                    if let Err(e) = auth.set_jwks(jwks, compute.params.compute_id.clone()) {
                        compute.fail(format!("the control plane's compute_ctl_config.jwks cannot be used: {e}"));
                        return;
                    }
                }
                if let Err(e) = compute.submit(fetched.spec) {
                    tracing::warn!(error = %e, "spec from the control plane not used");
                }
            }
            Err(e) => compute.fail(format!("cannot get a spec from the control plane: {e}")),
        },
    }
}

/// Whether a stop signal came, and a way to wait for one.
#[derive(Clone)]
struct Signals(Arc<tokio::sync::watch::Sender<bool>>);

impl Signals {
    fn received(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|got| *got).await;
    }
}

/// SIGTERM and SIGINT ask for a fast shutdown.
fn spawn_signal_handler(compute: Arc<Compute<TokioEnv>>) -> anyhow::Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let signals = Signals(Arc::new(tokio::sync::watch::Sender::new(false)));
    let seen = signals.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: shutting down");
            seen.0.send_replace(true);
            let _ = compute.request_terminate(TerminateMode::Fast);
        }
    });
    Ok(signals)
}
