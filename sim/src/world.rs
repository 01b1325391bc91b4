//! The turmoil world: hosts `compute` (the production supervisor on
//! `SimEnv`, its HTTP router on a turmoil listener), `storage` (base-backup
//! source) and `cplane` (the scenario driver, a client host).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome};
use compute_ctl::env::Net;
use compute_ctl::spec::ComputeSpec;
use compute_ctl::spec::ValidationContext;
use compute_ctl::spec_source::{FetchPolicy, SpecSource, fetch_spec};
use compute_ctl::state::ComputeStatus;
use compute_ctl::vm_monitor::{self, Cgroup, VmMonitor};
use compute_ctl::{http, monitor};
use serde_json::json;

use crate::env::SimEnv;
use crate::shared::{Shared, now_us};

pub const COMPUTE: &str = "compute";
pub const STORAGE: &str = "storage";
/// A second storage that follows the first (a replica's other source).
pub const STORAGE2: &str = "storage2";
pub const CPLANE: &str = "cplane";
pub const HTTP_PORT: u16 = 3080;
pub const PG_PORT: u16 = 55432;
pub const SUPERUSER: &str = "cloud_admin";
/// The vm-monitor's port (its default, 10301) under autoscaling.
pub const VM_MONITOR_PORT: u16 = 10301;
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
        compute_id: Some("compute-sim".into()),
        ready_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(2),
        activity_interval: Duration::from_secs(5),
        cgroup_procs: None,
        max_ready_lag: None,
        tls: None,
    }
}

/// Simulated time per step of the world: messages between hosts are
/// delivered at step boundaries (timers inside a host stay exact). Every
/// step ticks four tokio runtimes (three hosts and the network), about 4 µs
/// of real time even when all are idle, which was half of a notify seed's
/// cost at 10 ms. At 20 ms a seed takes about 150 steps; the planted bugs
/// are caught by the same seeds as at 10 ms.
pub const TICK: Duration = Duration::from_millis(20);

/// Builds the turmoil simulation for `seed`.
pub fn build<'a>(seed: u64, max_latency: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .epoch(epoch())
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(max_latency)
        .build()
}

/// Registers the `compute` host: one boot = one `Compute::run`, as the
/// production binary does. A restarted host boots again with an empty disk.
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

/// [`add_compute`] on the host called `host` (a fleet has many).
pub fn add_compute_on(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    shared: Shared,
    seed: u64,
    params: ComputeParams,
    boot: Boot,
) {
    let Boot {
        launch_spec,
        fetch_spec_from_cplane,
        autoscaling,
    } = boot;
    let boots = Arc::new(AtomicU64::new(0));
    let host_name = host.to_string();
    sim.host(host, move || {
        let host_name = host_name.clone();
        let shared = shared.clone();
        let params = params.clone();
        let launch_spec = launch_spec.clone();
        let boot = boots.fetch_add(1, Ordering::Relaxed);
        async move {
            let env = SimEnv::new(
                shared.clone(),
                seed ^ boot.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                epoch(),
            );
            // As src/launch.rs under AUTOSCALING: find the cgroup, start
            // Postgres in it, run the vm-monitor beside the API.
            let mut params = params.clone();
            let cgroup = if autoscaling {
                provision_cgroup(&env)?;
                let cg = Cgroup::locate(
                    &env,
                    std::path::Path::new(CGROUP_ROOT),
                    vm_monitor::DEFAULT_CGROUP,
                )
                .await?;
                params.cgroup_procs = Some(cg.procs_path());
                Some(cg)
            } else {
                None
            };
            let compute = Compute::new(env.clone(), params.clone());
            {
                let mut sh = shared.lock();
                sh.compute = Some(compute.clone());
                sh.boot = boot;
                sh.supervisor_exited = false;
                // A (re)booted host runs no postmaster yet.
                sh.loaded_config = None;
            }
            shared.event("boot", json!({"host": host_name, "boot": boot}));
            observe_status(&compute, shared.clone(), boot);
            if let Some(spec) = launch_spec {
                // As `compute_ctl -S spec.json` does before serving.
                compute.submit(spec)?;
            }
            // As the production binary (src/launch.rs) does: listen, serve
            // the real router, run the activity monitor, fetch the spec.
            let listener = env.bind(params.http_addr).await?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(http::serve::<SimEnv>(
                listener,
                http::router(compute.clone(), None),
                async move {
                    let _ = stop_rx.await;
                },
            ));
            tokio::spawn(monitor::run(compute.clone()));
            if let Some(cg) = cgroup {
                let mon = VmMonitor::start(&compute, cg, vm_monitor::MEMINFO.into()).await?;
                let listener = env
                    .bind(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        VM_MONITOR_PORT,
                    ))
                    .await?;
                tokio::spawn(vm_monitor::serve::<SimEnv>(
                    listener,
                    mon,
                    std::future::pending(),
                ));
            }
            let fetcher = fetch_spec_from_cplane.then(|| tokio::spawn(fetch_into(compute.clone())));
            let outcome = compute.run().await;
            if let Some(f) = fetcher {
                f.abort();
            }
            let (kind, reason) = match &outcome {
                RunOutcome::Terminated => ("terminated", String::new()),
                RunOutcome::Failed(r) => ("failed", r.clone()),
            };
            shared.lock().supervisor_exited = true;
            shared.event(
                "supervisor_exit",
                json!({"outcome": kind, "reason": reason}),
            );
            // The production binary exits here: answer what is in flight,
            // close every connection, stop.
            let _ = stop_tx.send(());
            let _ = compute_ctl::env::timeout(&env, Duration::from_secs(1), server).await;
            Ok(())
        }
    });
}

/// Records every status the watch channel shows.
fn observe_status(compute: &Arc<Compute<SimEnv>>, shared: Shared, boot: u64) {
    let mut rx = compute.subscribe();
    // The first status is recorded now, before anything can change it.
    let first = rx.borrow_and_update().status;
    {
        let t = now_us();
        let mut sh = shared.lock();
        sh.statuses.push((t, boot, first));
        sh.trace.push(t, "status", json!({"status": first}));
    }
    tokio::spawn(async move {
        let mut last = Some(first);
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let (status, applied) = {
                let st = rx.borrow_and_update();
                if let Some(replay) = st.replication.as_ref().and_then(|r| r.replay_lsn) {
                    let mut sh = shared.lock();
                    if sh.reported_replay.last().map(|(_, l)| *l) != Some(replay.0) {
                        sh.reported_replay.push((boot, replay.0));
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
                let t = now_us();
                let mut sh = shared.lock();
                sh.statuses.push((t, boot, status));
                sh.trace.push(t, "status", json!({"status": status}));
                last = Some(status);
            }
        }
    });
}

/// Registers the `storage` host.
pub fn add_storage(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    sim.host(STORAGE, move || {
        crate::storage::serve(shared.clone(), STORAGE, None)
    });
}

/// The safekeeper hosts and how far (bytes) each lags behind `storage`.
pub const SAFEKEEPERS: [(&str, u64); 3] = [("sk1", 0), ("sk2", 16384), ("sk3", 65536)];

/// Registers the safekeeper hosts.
pub fn add_safekeepers(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    for (name, lag) in SAFEKEEPERS {
        let shared = shared.clone();
        sim.host(name, move || {
            crate::storage::safekeeper(shared.clone(), name, lag)
        });
    }
}

/// Registers the `storage2` host, which follows `storage`.
pub fn add_storage2(sim: &mut turmoil::Sim<'_>, shared: Shared) {
    sim.host(STORAGE2, move || {
        crate::storage::serve(shared.clone(), STORAGE2, Some(STORAGE))
    });
}

/// The control plane's spec endpoint (served by the `cplane` host).
pub const CPLANE_PORT: u16 = 9090;

/// As `fetch_into` in src/launch.rs: fetch the spec from the control plane
/// unless a spec arrived by `/configure` first.
async fn fetch_into(compute: Arc<Compute<SimEnv>>) {
    let Ok(source) = SpecSource::new(
        &format!("http://{CPLANE}:{CPLANE_PORT}"),
        compute
            .params
            .compute_id
            .as_deref()
            .unwrap_or("compute-sim"),
    ) else {
        return;
    };
    let ctx = ValidationContext {
        superuser: compute.params.conn.user.clone(),
    };
    let policy = FetchPolicy::default();
    let mut rx = compute.subscribe();
    let superseded = rx.wait_for(|st| st.status != compute_ctl::state::ComputeStatus::Empty);
    tokio::select! {
        biased;
        _ = superseded => {}
        fetched = fetch_spec(&compute.env, &source, &ctx, &policy) => match fetched {
            Ok(spec) => {
                let _ = compute.submit(spec);
            }
            Err(e) => compute.fail(format!("cannot get a spec from the control plane: {e}")),
        },
    }
}
