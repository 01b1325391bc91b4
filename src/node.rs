//! One compute node, wired: the supervisor, the HTTP API (external with
//! auth and serve limits, internal on loopback), the activity monitor, the
//! vm-monitor under autoscaling, spec delivery (command line or control
//! plane, with the JWKS hand-off), the linger after a terminate and the
//! drain of the requests in flight.
//!
//! The production binary (`src/launch.rs`, on `TokioEnv`) and the simulator
//! (`sim/src/world.rs`, on `SimEnv`) both run exactly this; they differ only
//! in how they make a [`NodeConfig`] and what they do with the outcome.
//!
//! Invariant: everything here goes through [`Env`]; nothing reads the OS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::compute::{Compute, ComputeParams, FailReason, RunOutcome, SubmitError};
use crate::env::{Env, timeout};
use crate::http::{self, AuthSlot, ServeLimits};
use crate::refresh::RefreshHandle;
use crate::spec::{ComputeSpec, ValidationContext};
use crate::spec_source::{FetchPolicy, SpecSource};
use crate::state::ComputeStatus;
use crate::vm_monitor::{self, Cgroup, CgroupError, VmMonitor, VmMonitorError};

/// How long requests in flight may take to finish once the compute has
/// stopped (e.g. the 500 of a failed first configure, the 200 of a terminate).
pub const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the command line (or the simulator) decides about a node.
pub struct NodeConfig {
    /// The supervisor's parameters; `http_addr` is the external API's address.
    pub params: ComputeParams,
    /// A spec given at launch (`-S`/`--spec-json`), submitted before anything else.
    pub spec: Option<ComputeSpec>,
    /// Where to pull the spec from when none is given (`--control-plane-uri`).
    pub spec_source: Option<SpecSource>,
    /// What validation of a pulled spec may assume exists.
    pub validation: ValidationContext,
    /// The JWT verifier of `--jwks` or `-c`'s `compute_ctl_config.jwks`, with
    /// the token rules; empty leaves auth off until the control plane hands
    /// over a key set with the spec.
    pub auth: AuthSlot,
    /// Limits of the external HTTP server.
    pub serve_limits: ServeLimits,
    /// `--http-tls`: the external API over TLS with this pair, watched.
    pub http_tls: Option<crate::params::TlsPaths>,
    /// The internal (loopback) API's port, if any.
    pub internal_http_port: Option<u16>,
    /// The vm-monitor, when autoscaling is on.
    pub autoscaling: Option<Autoscaling>,
    /// How long the API keeps answering after a terminate over HTTP.
    pub terminated_linger: Duration,
    /// How long requests in flight may take once the compute has stopped.
    pub http_drain_timeout: Duration,
    /// `--pg-init-timeout`: Postgres must be running this long after a spec
    /// arrives, or the compute fails.
    pub pg_init_timeout: Option<Duration>,
    /// `--installed-extensions-collection-interval`: how often Neon's
    /// installed-extensions metric is refreshed; `None` collects nothing.
    pub installed_extensions_interval: Option<Duration>,
    /// `--refresh-after-secs`: a replica whose WAL receiver has not streamed
    /// this long pulls its spec from the control plane again
    /// (`crate::refresh`); `None` leaves it to `/refresh_configuration`.
    pub refresh_after: Option<Duration>,
}

/// Where the vm-monitor finds its cgroup and where it listens.
#[derive(Debug, Clone)]
pub struct Autoscaling {
    pub cgroup_root: PathBuf,
    pub cgroup: String,
    pub addr: SocketAddr,
    /// `/proc/meminfo`, or the simulator's copy of it.
    pub meminfo: PathBuf,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "AUTOSCALING is set, but the vm-monitor cannot use its cgroup: {0}; check --cgroup-root and --cgroup, or unset AUTOSCALING"
    )]
    Cgroup(#[source] CgroupError),
    #[error(
        "cannot listen on {addr} for the {what}: {source}; is another compute_ctl or another program using that port? pick a free one with {flag}"
    )]
    Bind {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the vm-monitor: {0}; check that /proc/meminfo is readable")]
    VmMonitor(#[source] VmMonitorError),
    #[error("cannot accept the initial spec: {0}")]
    InitialSpec(#[source] SubmitError),
    #[error("{0}")]
    HttpTls(#[source] http::tls::HttpTlsError),
}

/// A stop request from outside (SIGTERM/SIGINT in production): seen by the
/// linger, which then ends at once.
#[derive(Clone, Debug)]
pub struct StopSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a stop was asked for.
    pub fn raise(&self) {
        self.0.send_replace(true);
    }

    pub fn received(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|got| *got).await;
    }
}

/// A node whose listeners are bound and whose supervisor exists, not yet
/// running: [`Node::compute`] is the handle for signal handlers and
/// observers, [`Node::run`] runs it.
pub struct Node<E: Env> {
    compute: Arc<Compute<E>>,
    config: NodeConfig,
    external: E::Listener,
    internal: Option<E::Listener>,
    vm: Option<(Cgroup, E::Listener)>,
    http_tls: Option<http::HttpTls>,
}

impl<E: Env> Node<E>
where
    <E::Listener as axum::serve::Listener>::Addr: std::fmt::Debug,
{
    /// Locates the cgroup and binds every listener before anything else
    /// happens, so that a busy port fails fast and the API is up before the
    /// first spec is applied.
    pub async fn bind(env: E, mut config: NodeConfig) -> Result<Self, NodeError> {
        let cgroup = match &config.autoscaling {
            Some(a) => {
                let cg = Cgroup::locate(&env, &a.cgroup_root, &a.cgroup)
                    .await
                    .map_err(NodeError::Cgroup)?;
                config.params.cgroup_procs = Some(cg.procs_path());
                Some((cg, a.addr))
            }
            None => None,
        };
        let addr = config.params.http_addr;
        let external = env.bind(addr).await.map_err(|source| NodeError::Bind {
            what: "HTTP API",
            flag: "--http-port",
            addr,
            source,
        })?;
        let http_tls = match config.http_tls.clone() {
            Some(paths) => Some(
                http::HttpTls::load(&env, paths)
                    .await
                    .map_err(NodeError::HttpTls)?,
            ),
            None => None,
        };
        tracing::info!(%addr, tls = http_tls.is_some(), "HTTP API listening");
        let vm = match cgroup {
            Some((cg, addr)) => {
                let l = env.bind(addr).await.map_err(|source| NodeError::Bind {
                    what: "vm-monitor",
                    flag: "--vm-monitor-addr",
                    addr,
                    source,
                })?;
                Some((cg, l))
            }
            None => None,
        };
        let internal = match config.internal_http_port {
            Some(port) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let l = env.bind(addr).await.map_err(|source| NodeError::Bind {
                    what: "internal HTTP API",
                    flag: "--internal-http-port (or turn it off with --no-internal-http)",
                    addr,
                    source,
                })?;
                tracing::info!(%addr, "internal HTTP API listening (loopback only)");
                Some(l)
            }
            None => None,
        };
        let compute = Compute::new(env, config.params.clone());
        Ok(Self {
            compute,
            config,
            external,
            internal,
            vm,
            http_tls,
        })
    }

    /// The supervisor of this node.
    pub fn compute(&self) -> &Arc<Compute<E>> {
        &self.compute
    }

    /// Serves, runs the supervisor until it terminates or fails, lingers
    /// after a terminate over HTTP (unless `stop` was raised), then drains
    /// the requests in flight.
    pub async fn run(self, stop: StopSignal) -> Result<RunOutcome, NodeError> {
        let Self {
            compute,
            config,
            external,
            internal,
            vm,
            http_tls,
        } = self;
        let auth = config.auth;
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let tls_watcher = http_tls
            .as_ref()
            .map(|t| tokio::spawn(t.clone().watch(compute.env().clone())));
        let server = tokio::spawn(http::serve_tls_with_limits(
            external,
            http::router_with_auth(compute.clone(), auth.clone()),
            config.serve_limits,
            http_tls.map(|t| t.acceptor()),
            async move {
                let _ = http_stopped.await;
            },
        ));
        // A configuration refresh needs a control plane to pull from, and
        // someone to ask for it: the internal listener or the replica watcher.
        let refresh = config
            .spec_source
            .clone()
            .filter(|_| internal.is_some() || config.refresh_after.is_some())
            .map(|source| {
                let handle = RefreshHandle::new();
                let task = tokio::spawn(crate::refresh::run(
                    compute.clone(),
                    handle.clone(),
                    source,
                    config.validation.clone(),
                    config.refresh_after,
                ));
                (handle, task)
            });
        if let Some(listener) = internal {
            tokio::spawn(http::serve::<E>(
                listener,
                http::internal_router(compute.clone(), refresh.as_ref().map(|(h, _)| h.clone())),
                std::future::pending(),
            ));
        }
        tokio::spawn(crate::monitor::run(compute.clone()));
        compute.watch_tls();
        if let Some(limit) = config.pg_init_timeout {
            tokio::spawn(enforce_pg_init_timeout(compute.clone(), limit));
        }
        if let Some(interval) = config.installed_extensions_interval {
            tokio::spawn(crate::installed_extensions::run(compute.clone(), interval));
        }
        if let Some((cg, listener)) = vm {
            let meminfo = config
                .autoscaling
                .as_ref()
                .map(|a| a.meminfo.clone())
                .unwrap_or_else(|| vm_monitor::MEMINFO.into());
            let mon = VmMonitor::start(&compute, cg, meminfo)
                .await
                .map_err(NodeError::VmMonitor)?;
            tracing::info!("vm-monitor listening (websocket at GET /monitor)");
            tokio::spawn(async move {
                if let Err(e) = vm_monitor::serve::<E>(listener, mon, std::future::pending()).await
                {
                    tracing::error!(error = %e, "vm-monitor server stopped");
                }
            });
        }
        if let Some(spec) = config.spec {
            compute
                .submit_start_spec(spec)
                .map_err(NodeError::InitialSpec)?;
        }
        let fetcher = config
            .spec_source
            .map(|s| tokio::spawn(fetch_into(compute.clone(), s, config.validation, auth)));
        let outcome = compute.run().await;
        if let Some(f) = fetcher {
            f.abort();
        }
        if let Some((_, task)) = refresh {
            task.abort();
        }
        if outcome == RunOutcome::Terminated && !stop.received() {
            linger(&compute, config.terminated_linger, &stop).await;
        }
        // Stop accepting, and let the responses in flight be delivered.
        let _ = stop_http.send(());
        if let Some(w) = tls_watcher {
            w.abort();
        }
        let drain = config.http_drain_timeout;
        match timeout(compute.env(), drain, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!(
                "HTTP requests still open {drain:?} after the compute stopped; exiting anyway"
            ),
        }
        Ok(outcome)
    }
}

/// Binds and runs a node: [`Node::bind`] then [`Node::run`].
pub async fn run<E: Env>(
    env: E,
    config: NodeConfig,
    stop: StopSignal,
) -> Result<RunOutcome, NodeError>
where
    <E::Listener as axum::serve::Listener>::Addr: std::fmt::Debug,
{
    Node::bind(env, config).await?.run(stop).await
}

/// After a terminate over HTTP: keep answering for `d` (Neon's control
/// plane reads the `lsn` and may repeat the terminate), unless a stop is
/// asked for.
async fn linger<E: Env>(compute: &Compute<E>, d: Duration, stop: &StopSignal) {
    // Nobody asked over HTTP (Postgres was stopped from outside): no one
    // will read the lsn.
    if d.is_zero() || compute.state().terminate_mode.is_none() {
        return;
    }
    tracing::info!(
        seconds = d.as_secs(),
        "terminated; the HTTP API keeps answering a while (--terminated-linger-secs)"
    );
    tokio::select! {
        biased;
        () = stop.wait() => {}
        () = compute.env().sleep(d) => {}
    }
}

/// Fetches the spec from the control plane and submits it, unless a spec
/// arrives another way first (or the compute is stopped); a fetch that gives
/// up fails the compute. A key set sent with the spec replaces auth's.
async fn fetch_into<E: Env>(
    compute: Arc<Compute<E>>,
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
        fetched = crate::spec_source::fetch(compute.env(), &source, &ctx, &policy) => match fetched {
            Ok(fetched) => {
                if let Some(jwks) = &fetched.jwks {
                    if let Err(e) = auth.set_jwks(jwks, compute.params().compute_id.clone()) {
                        compute.fail(FailReason::SpecSource(format!("the control plane's compute_ctl_config.jwks cannot be used: {e}")));
                        return;
                    }
                }
                if let Err(e) = compute.submit_start_spec(fetched.spec) {
                    tracing::warn!(error = %e, "spec from the control plane not used");
                }
            }
            Err(e) => compute.fail(FailReason::SpecSource(format!("cannot get a spec from the control plane: {e}"))),
        },
    }
}

/// `--pg-init-timeout`: from the moment a spec arrives, Postgres must be
/// running within `limit`; otherwise the compute fails, saying so.
async fn enforce_pg_init_timeout<E: Env>(compute: Arc<Compute<E>>, limit: Duration) {
    let mut rx = compute.subscribe();
    if rx
        .wait_for(|st| st.status != ComputeStatus::Empty)
        .await
        .is_err()
    {
        return;
    }
    let started = rx.wait_for(|st| {
        !matches!(
            st.status,
            ComputeStatus::ConfigurationPending | ComputeStatus::Init
        )
    });
    tokio::select! {
        biased;
        _ = started => {}
        () = compute.env().sleep(limit) => compute.fail(FailReason::InitTimeout(format!(
            "Postgres was not running {} s after the spec arrived (--pg-init-timeout); see the Postgres log lines above, or raise --pg-init-timeout",
            limit.as_secs()
        ))),
    }
}
