//! The turmoil world: hosts `compute` (the production node wiring,
//! `compute_ctl::node`, on `SimEnv`: supervisor, HTTP API, monitors), `storage` (base-backup
//! source) and `cplane` (the scenario driver, a client host).

pub mod env;
pub mod fs;
pub mod inject;
pub mod observe;
pub mod pg;
pub mod procs;
pub mod safekeeper;
mod safekeeper_report;
pub mod shared;
pub mod storage;
pub mod walstream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compute_ctl::compute::{Compute, ComputeParams, ConnTarget};
use compute_ctl::http::{Auth, AuthSlot, ServeLimits};
use compute_ctl::node::{Autoscaling, HTTP_DRAIN_TIMEOUT, Node, NodeConfig, StopSignal};
use compute_ctl::spec::ComputeSpec;
use compute_ctl::spec::ValidationContext;
use compute_ctl::spec_source::SpecSource;
use compute_ctl::state::ComputeStatus;
use compute_ctl::vm_monitor;

use crate::events::Event;
use crate::world::env::SimEnv;
use crate::world::shared::Shared;

use crate::names::{
    COMPUTE, CPLANE, CPLANE_PORT, DURABLE_SAFEKEEPERS, HTTP_PORT, PG_PORT, SAFEKEEPERS, STORAGE,
    STORAGE2, SUPERUSER, VM_MONITOR_PORT,
};

/// The compute's `MemTotal` under autoscaling: 4 GiB.
pub const MEM_TOTAL: u64 = 4 << 30;
/// The cgroup's memory use when the compute boots: 1 GiB.
pub const BOOT_USAGE: u64 = 1 << 30;
/// The cgroup v2 root and the cgroup Postgres runs in.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP_DIR: &str = "/sys/fs/cgroup/neon-postgres";

/// Sets the compute's cgroup memory usage (`memory.stat`, cgroup v2), as
/// the client load would make it.
pub fn write_cgroup_usage(env: &SimEnv, bytes: u64) {
    let active = bytes / 4 * 3;
    let stat = format!(
        "anon {bytes}\nfile 1073741824\nactive_anon {active}\ninactive_anon {}\nactive_file 1073741824\n",
        bytes - active
    );
    let _ = env.fs().write(
        &PathBuf::from(CGROUP_DIR).join("memory.stat"),
        stat.as_bytes(),
    );
}

/// What the VM image provides under autoscaling: a cgroup v2 hierarchy
/// with the `neon-postgres` cgroup ([`BOOT_USAGE`] in use) and `/proc/meminfo`.
fn provision_cgroup(env: &SimEnv) -> std::io::Result<()> {
    let mut fs = env.fs();
    fs.create_dir_all(std::path::Path::new(CGROUP_DIR))?;
    fs.create_dir_all(std::path::Path::new("/proc"))?;
    fs.write(
        &PathBuf::from(CGROUP_ROOT).join("cgroup.controllers"),
        b"cpu memory\n",
    )?;
    fs.write(&PathBuf::from(CGROUP_DIR).join("cgroup.procs"), b"")?;
    fs.write(
        std::path::Path::new(vm_monitor::MEMINFO),
        format!("MemTotal: {} kB\n", MEM_TOTAL / 1024).as_bytes(),
    )?;
    drop(fs);
    write_cgroup_usage(env, BOOT_USAGE);
    Ok(())
}

/// What an image build's `compute_ctl --write-settings-cache` leaves: the
/// simulated binary's listing, under `--settings-cache`.
async fn bake_settings_cache(env: &SimEnv, params: &ComputeParams) -> std::io::Result<()> {
    use compute_ctl::pg::settings_cache::{BinaryAnswers, lookup, store};
    let Some(dir) = &params.settings_cache else {
        return Ok(());
    };
    let Some((entry, _)) = lookup(env, dir, &params.pgbin).await else {
        return Err(std::io::Error::other(
            "the simulated binary cannot be stamped",
        ));
    };
    let answers = BinaryAnswers {
        version: procs::POSTGRES_VERSION.into(),
        describe_config: crate::pgmodel::guc::describe_config(),
        ..BinaryAnswers::default()
    };
    store(env, &entry, &answers).await
}

/// The key set compute_ctl verifies bearer tokens with: `--jwks` at every
/// boot, and the control plane's `compute_ctl_config.jwks` where the spec is
/// fetched. The repository's fixed test pair (`fixtures/jwt/`: an Ed25519
/// key, kid [`SIGNING_KID`], and an RSA one), so nothing is drawn from the
/// OS and every seed signs and verifies the same bytes.
pub const JWKS: &str = include_str!("../../../fixtures/jwt/jwks.json");
/// The private half of [`JWKS`]'s Ed25519 key: the control plane signs with it.
pub const SIGNING_KEY_PEM: &[u8] = include_bytes!("../../../fixtures/jwt/ed25519.pem");
/// The `kid` of [`SIGNING_KEY_PEM`] in [`JWKS`].
pub const SIGNING_KID: &str = "test-ed25519";
/// An Ed25519 key that is not in [`JWKS`]: a forged token is signed with it.
pub const FOREIGN_KEY_PEM: &[u8] = include_bytes!("../../../fixtures/jwt/other_ed25519.pem");

/// `--compute-id` of the compute on `host` (the `compute_id` claim its
/// tokens must carry).
pub fn compute_id(host: &str) -> String {
    format!("{host}-sim")
}

/// The world's wall clock at simulated time zero (2026-01-01T00:00:00Z).
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// The supervisor's parameters, as `compute_ctl -D /pgdata -C ... -b ...` would give.
pub fn params() -> ComputeParams {
    ComputeParams {
        pgdata: PathBuf::from("/var/lib/compute/pgdata"),
        pgbin: PathBuf::from("/usr/lib/postgresql/15/bin/postgres"),
        conn: ConnTarget {
            host: "127.0.0.1".into(),
            port: PG_PORT,
            user: SUPERUSER.into(),
            dbname: "postgres".into(),
        },
        http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), HTTP_PORT),
        compute_id: Some(compute_id(COMPUTE)),
        ready_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(2),
        activity_interval: Duration::from_secs(5),
        cgroup_procs: None,
        // `--advertise-addr compute:55432`, as a deployment whose
        // safekeepers run on other hosts must say where they reach it.
        advertise: Some(compute_ctl::params::AdvertiseAddr {
            host: COMPUTE.into(),
            port: PG_PORT,
        }),
        quorum_deadline: compute_ctl::params::DEFAULT_QUORUM_DEADLINE,
        max_ready_lag: None,
        tls: None,
        // As the binary's default: the host's disk, lost with the host.
        settings_cache: Some(PathBuf::from(compute_ctl::params::DEFAULT_SETTINGS_CACHE)),
    }
}

/// [`params`] of a compute on `host` (it advertises that host).
pub fn params_on(host: &str) -> ComputeParams {
    let mut p = params();
    p.advertise = Some(compute_ctl::params::AdvertiseAddr {
        host: host.into(),
        port: PG_PORT,
    });
    p.compute_id = Some(compute_id(host));
    p
}

/// Simulated time per step of the world (defined with the names, which the
/// checkers may read: a fleet's storm bound counts in it).
pub use crate::names::TICK;

/// Builds the turmoil simulation for `seed`.
pub fn build<'a>(seed: u64, max_latency: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .epoch(epoch())
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(max_latency)
        // turmoil panics when a listener has more than this many
        // connections waiting to be accepted (default 64): a fleet's 50
        // computes reach the storage at once, several connections each.
        .tcp_capacity(1024)
        .build()
}

/// Registers the `compute` host: one boot = one `compute_ctl::node::run`,
/// as the production binary does. A restarted host boots again with an empty disk.
pub fn add_compute(
    sim: &mut turmoil::Sim<'_>,
    shared: Shared,
    seed: u64,
    params: ComputeParams,
    launch_spec: Option<ComputeSpec>,
    fetch_spec_from_cplane: bool,
    autoscaling: bool,
) {
    let boot = Boot {
        launch_spec,
        fetch_spec_from_cplane,
        autoscaling,
    };
    add_compute_on(sim, COMPUTE, shared, seed, params, boot);
}

/// How a compute host boots: as `compute_ctl` is started.
pub struct Boot {
    /// Given on the command line (`-S`), submitted before serving.
    pub launch_spec: Option<ComputeSpec>,
    /// Fetched from the control plane instead.
    pub fetch_spec_from_cplane: bool,
    /// `AUTOSCALING` set: the vm-monitor runs, Postgres in its cgroup.
    pub autoscaling: bool,
}

/// What `compute_ctl` is started with in the simulated world: what
/// `launch.rs` makes of a production command line (the flags' defaults:
/// serve limits, a 5 s linger after a terminate, a 10 s drain, the internal
/// listener on 3081 (loopback), with `--jwks` ([`JWKS`]) and
/// `--compute-id` [`compute_id`]), the spec from `-S` or from the control
/// plane (whose answer carries the same key set as
/// `compute_ctl_config.jwks`). What differs from production, and why:
/// - no TLS on the external listener (`--http-tls`): turmoil's TCP carries
///   the requests, and the TLS watcher polls files the scenarios never
///   rotate;
/// - no installed-extensions metric: it queries with parameters (the
///   extended query protocol), which the simulated Postgres does not speak
///   (simple queries only), and it reads `pg_database`/`pg_extension`,
///   which it does not model;
/// - no configuration refresh (`--refresh-after-secs`, default 30 s): the
///   scenarios' control plane delivers every move itself, and a replica's
///   pull would race the move under test; `/refresh_configuration` on the
///   internal listener is served (it needs a control plane to pull from);
/// - `--pg-init-timeout` unset, as its default (the flag has none, nor
///   has Neon's).
pub fn node_config(params: &ComputeParams, boot: &Boot) -> NodeConfig {
    let spec_source = boot.fetch_spec_from_cplane.then(|| {
        SpecSource::new(
            &format!("http://{CPLANE}:{CPLANE_PORT}"),
            params.compute_id.as_deref().unwrap_or("compute-sim"),
        )
        .expect("the control plane's URL is valid")
    });
    let auth = Auth::from_jwks(JWKS, params.compute_id.clone()).expect("the test key set is valid");
    NodeConfig {
        params: params.clone(),
        spec: boot.launch_spec.clone(),
        spec_source,
        validation: ValidationContext {
            superuser: params.conn.user.clone(),
        },
        auth: AuthSlot::new(Some(auth)),
        serve_limits: ServeLimits::default(),
        http_tls: None,
        internal_http_port: Some(compute_ctl::cli::DEFAULT_INTERNAL_HTTP_PORT),
        pg_init_timeout: None,
        installed_extensions_interval: None,
        refresh_after: None,
        autoscaling: boot.autoscaling.then(|| Autoscaling {
            cgroup_root: PathBuf::from(CGROUP_ROOT),
            cgroup: vm_monitor::DEFAULT_CGROUP.into(),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), VM_MONITOR_PORT),
            meminfo: vm_monitor::MEMINFO.into(),
        }),
        terminated_linger: TERMINATED_LINGER,
        http_drain_timeout: HTTP_DRAIN_TIMEOUT,
    }
}

/// `--terminated-linger-secs`' default.
pub const TERMINATED_LINGER: Duration = Duration::from_secs(5);

/// [`add_compute`] on the host called `host` (a fleet has many), with
/// `--compute-id` [`compute_id`]`(host)`. Each boot runs
/// [`compute_ctl::node`] on a fresh [`SimEnv`], as the production binary
/// runs it on `TokioEnv`.
pub fn add_compute_on(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    shared: Shared,
    seed: u64,
    params: ComputeParams,
    boot: Boot,
) {
    // Each compute has its own `--compute-id` (a fleet's hosts too): the
    // `compute_id` claim the control plane's tokens for it carry.
    let mut params = params;
    params.compute_id = Some(compute_id(host));
    let boots = Arc::new(AtomicU64::new(0));
    let host_name = host.to_string();
    let cache_params = params.clone();
    let boot_cfg = Arc::new(boot);
    sim.host(host, move || {
        let host_name = host_name.clone();
        let shared = shared.clone();
        let config = node_config(&params, &boot_cfg);
        let autoscaling = boot_cfg.autoscaling;
        let boot = boots.fetch_add(1, Ordering::Relaxed);
        let cache_params = cache_params.clone();
        async move {
            let env = SimEnv::new(
                shared.clone(),
                seed ^ boot.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                epoch(),
            );
            if autoscaling {
                // What the VM image provides.
                provision_cgroup(&env)?;
            }
            if boot % 2 == 1 {
                // Every other boot's image has the settings cache its build
                // filled (`--write-settings-cache`): a start from it asks
                // the binary nothing; the others ask it and fill their own.
                bake_settings_cache(&env, &cache_params).await?;
            }
            let node = Node::bind(env, config).await?;
            let compute = node.compute().clone();
            {
                let mut sh = shared.lock();
                sh.compute = Some(compute.clone());
                sh.boot = boot;
                sh.supervisor_exited = false;
                // A (re)booted host runs no postmaster yet.
                sh.loaded_config = None;
            }
            shared.emit(Event::Boot {
                host: host_name,
                boot,
            });
            observe_status(&compute, shared.clone(), boot);
            // Nobody sends the simulated process a signal.
            let _ = node.run(StopSignal::new()).await?;
            Ok(())
        }
    });
}

/// Records every status the watch channel shows.
fn observe_status(compute: &Arc<Compute<SimEnv>>, shared: Shared, boot: u64) {
    let mut rx = compute.subscribe();
    // The first status is recorded now, before anything can change it.
    let first = rx.borrow_and_update().status;
    let compute = compute.clone();
    shared.emit(Event::Status {
        boot,
        status: first,
    });
    tokio::spawn(async move {
        let mut last = Some(first);
        let mut reported = safekeeper_report::Reported::default();
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let (status, applied) = {
                let st = rx.borrow_and_update();
                safekeeper_report::report(&shared, boot, &st, &mut reported);
                if st.supervisor_exited && !shared.lock().supervisor_exited {
                    // The supervisor's loop returned: the binary is
                    // lingering or draining, it applies nothing any more.
                    shared.lock().supervisor_exited = true;
                    shared.emit(Event::SupervisorExit {
                        status: st.status,
                        reason: st.error.clone().unwrap_or_default(),
                    });
                }
                if let Some(replay) = st.replication.as_ref().and_then(|r| r.replay_lsn) {
                    let new = shared.lock().last_replay.replace(replay.0) != Some(replay.0);
                    if new {
                        shared.emit(Event::ReplayReported {
                            boot,
                            lsn: replay.0,
                        });
                    }
                }
                let applied = (st.status == ComputeStatus::Running
                    && st.applied_generation == st.generation)
                    .then(|| st.spec.clone())
                    .flatten()
                    .filter(|s| !s.skip_pg_catalog_updates);
                (st.status, applied)
            };
            if applied.is_some() {
                shared.lock().catalog_spec = applied;
            }
            if last != Some(status) {
                shared.emit(Event::Status { boot, status });
                if status == ComputeStatus::Running && last != Some(ComputeStatus::Running) {
                    emit_started(&shared, &compute, boot);
                }
                last = Some(status);
            }
        }
    });
}

/// A primary with safekeepers became `running`: where its WAL forked.
fn emit_started(shared: &Shared, compute: &Arc<Compute<SimEnv>>, boot: u64) {
    let Some(spec) = compute.state().spec else {
        return;
    };
    let (enabled, timeline, fork) = {
        let sh = shared.lock();
        let c = &sh.wal.compute;
        (sh.wal.enabled, c.wal.tli, c.primary_since)
    };
    if !enabled
        || spec.safekeeper_connstrings.is_empty()
        || spec.mode != compute_ctl::spec::ComputeMode::Primary
    {
        return;
    }
    shared.emit(Event::ComputeStarted {
        host: COMPUTE.to_string(),
        boot,
        timeline,
        fork_lsn: fork.unwrap_or(0),
        safekeepers: spec.safekeeper_connstrings.len(),
    });
}

/// Registers the `storage` host.
pub fn add_storage(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    sim.host(STORAGE, move || {
        crate::world::storage::serve(shared.clone(), STORAGE, None)
    });
}

/// Registers the safekeeper hosts.
pub fn add_safekeepers(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    for (name, lag) in SAFEKEEPERS {
        let shared = shared.clone();
        sim.host(name, move || {
            crate::world::storage::safekeeper(shared.clone(), name, lag)
        });
    }
}

/// Registers the safekeeper hosts of a primary with safekeepers
/// ([`crate::world::safekeeper`]: streaming standbys with a WAL), one per delay
/// (at most [`DURABLE_SAFEKEEPERS`]), each with its flush delay (its lag
/// behind the compute), and turns the WAL model on.
pub fn add_durable_safekeepers(sim: &mut turmoil::Sim<'_>, shared: Shared, delays_ms: &[u64]) {
    shared.lock().wal.enabled = true;
    for (name, delay) in DURABLE_SAFEKEEPERS
        .into_iter()
        .zip(delays_ms.iter().copied())
    {
        shared
            .lock()
            .wal
            .safekeepers
            .entry(name.to_string())
            .or_default()
            .flush_delay_ms = delay;
        let shared = shared.clone();
        sim.host(name, move || {
            crate::world::safekeeper::serve(shared.clone(), name)
        });
    }
}

/// The connection string of safekeeper host `name`, as a spec lists it.
pub fn safekeeper_connstring(name: &str) -> String {
    format!("{name}:{}", crate::names::SAFEKEEPER_PORT)
}

/// The connection strings of the safekeeper hosts, as a spec lists them.
pub fn safekeeper_connstrings() -> Vec<String> {
    SAFEKEEPERS
        .iter()
        .map(|(h, _)| format!("{h}:{}", crate::names::SAFEKEEPER_PORT))
        .collect()
}

/// Registers the `storage2` host, which follows `storage`.
pub fn add_storage2(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    sim.host(STORAGE2, move || {
        crate::world::storage::serve(shared.clone(), STORAGE2, Some(STORAGE))
    });
}
