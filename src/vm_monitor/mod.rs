//! The vm-monitor: under `AUTOSCALING`, it speaks Neon's autoscaler-agent
//! protocol on a websocket (`GET /monitor`, default port 10301), watches the
//! memory of the cgroup Postgres runs in, asks for an upscale under memory
//! pressure and agrees to a downscale only when it leaves room.
//!
//! - [`protocol`]: the messages and version negotiation.
//! - [`cgroup`]: the cgroup's files (v1 and v2) and its memory usage.
//! - [`rules`]: the rolling average and the threshold arithmetic.
//! - [`filecache`]: Neon's file cache, where it exists.
//! - `sampler`: reads the cgroup every 100 ms onto a watch channel.
//! - `dispatcher`: one agent connection; `server`: the websocket route.
//!
//! State that must outlive a connection (the memory total agreed with the
//! agent, the last upscale request, our odd message ids) is here, in
//! [`VmMonitor`]; a new agent connection closes the previous one. Every
//! effect goes through the Env seam, so the simulator runs this very code.

pub mod cgroup;
mod dispatcher;
pub mod filecache;
pub mod protocol;
pub mod rules;
mod sampler;
mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;

pub use cgroup::{Cgroup, CgroupError, Layout};
pub use server::{router, serve};

use crate::compute::Compute;
use crate::env::Env;
use crate::state::ComputeStatus;
use filecache::FileCache;
use rules::History;

/// Where the monitor listens unless `--vm-monitor-addr` says otherwise.
pub const DEFAULT_ADDR: &str = "0.0.0.0:10301";
/// The cgroup Postgres runs in unless `--cgroup` says otherwise.
pub const DEFAULT_CGROUP: &str = "neon-postgres";
/// Where cgroupfs is mounted unless `--cgroup-root` says otherwise.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where `MemTotal` is read.
pub const MEMINFO: &str = "/proc/meminfo";
/// The largest websocket message or frame; a bigger one closes the connection.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why the monitor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum VmMonitorError {
    #[error("vm-monitor: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("vm-monitor: cannot read the machine's memory size from {path}: {problem}")]
    MemTotal { path: String, problem: String },
}

/// The file cache, as far as we know.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileCacheState {
    /// Postgres has not run yet.
    Unknown,
    /// Vanilla Postgres (or the detection failed): nothing to size.
    Absent,
    Present(FileCache),
}

/// What the monitor and the agent agreed on.
#[derive(Debug, Clone)]
struct Scaling {
    /// The memory we may use, in bytes.
    usable: u64,
    /// Upscale when the average usage reaches this.
    threshold: u64,
    last_upscale_request: Option<Instant>,
    /// Our message ids: odd, the agent's are even.
    last_id: u64,
}

/// The monitor of one compute.
pub struct VmMonitor<E: Env> {
    env: E,
    cgroup: Cgroup,
    scaling: Mutex<Scaling>,
    history: watch::Receiver<History>,
    /// Bumped by every new agent connection; the older ones close.
    agents: watch::Sender<u64>,
    filecache: Mutex<FileCacheState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: Env> VmMonitor<E> {
    /// Reads the machine's memory, starts sampling `cgroup`, and looks for
    /// Neon's file cache once Postgres runs. Serve it with [`serve`].
    pub async fn start(
        compute: &Arc<Compute<E>>,
        cgroup: Cgroup,
        meminfo: PathBuf,
    ) -> Result<Arc<Self>, VmMonitorError> {
        let env = compute.env().clone();
        let mem_total = env
            .read(&meminfo)
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| cgroup::mem_total(&String::from_utf8_lossy(&b)))
            .map_err(|problem| VmMonitorError::MemTotal {
                path: meminfo.display().to_string(),
                problem,
            })?;
        let threshold = rules::threshold(mem_total);
        let history = sampler::spawn(env.clone(), cgroup.clone());
        tracing::info!(
            cgroup = %cgroup.dir.display(),
            layout = ?cgroup.layout,
            mem_total_mib = rules::mib(mem_total),
            threshold_mib = rules::mib(threshold),
            "vm-monitor: watching the cgroup's memory; initial upscale threshold is 85% of MemTotal"
        );
        let mon = Arc::new(Self {
            env,
            cgroup,
            scaling: Mutex::new(Scaling {
                usable: mem_total,
                threshold,
                last_upscale_request: None,
                last_id: 1,
            }),
            history,
            agents: watch::Sender::new(0),
            filecache: Mutex::new(FileCacheState::Unknown),
        });
        tokio::spawn(find_file_cache(mon.clone(), compute.clone()));
        Ok(mon)
    }

    /// The cgroup being watched.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The current upscale threshold, in bytes.
    pub fn threshold(&self) -> u64 {
        lock(&self.scaling).threshold
    }

    /// An `UpscaleRequest` (with a fresh odd id) if `history` calls for one now.
    fn upscale_request(&self, history: &History) -> Option<protocol::Outbound> {
        let now = self.env.now();
        let mut s = lock(&self.scaling);
        if !rules::wants_upscale(history, s.threshold, s.last_upscale_request, now) {
            return None;
        }
        s.last_upscale_request = Some(now);
        s.last_id += 2;
        tracing::info!(
            avg_non_reclaimable_mib = rules::mib(history.avg),
            threshold_mib = rules::mib(s.threshold),
            "vm-monitor: memory usage reached the threshold; requesting an upscale"
        );
        Some(protocol::Outbound::new(
            protocol::OutboundKind::UpscaleRequest {},
            s.last_id,
        ))
    }

    /// Adopts `usable` bytes as the new total; returns the old and new thresholds.
    fn adopt(&self, usable: u64) -> (u64, u64) {
        let mut s = lock(&self.scaling);
        let old = s.threshold;
        s.usable = usable;
        s.threshold = rules::threshold(usable);
        (old, s.threshold)
    }

    /// Sizes Neon's file cache for `usable` bytes, if there is one.
    async fn resize_file_cache(
        &self,
        usable: u64,
    ) -> Result<Option<u64>, filecache::FileCacheError> {
        let fc = match &*lock(&self.filecache) {
            FileCacheState::Present(fc) => fc.clone(),
            _ => return Ok(None),
        };
        let mib = fc.resize(&self.env, usable).await?;
        tracing::info!(size_mib = mib, "vm-monitor: file cache resized");
        Ok(Some(mib))
    }
}

/// Once Postgres first runs: is there a file cache to size?
async fn find_file_cache<E: Env>(mon: Arc<VmMonitor<E>>, compute: Arc<Compute<E>>) {
    let mut rx = compute.subscribe();
    if rx
        .wait_for(|st| st.status == ComputeStatus::Running)
        .await
        .is_err()
    {
        return;
    }
    let state = match filecache::detect(compute.env(), &compute.params().conn).await {
        Ok(None) => {
            tracing::info!(
                "vm-monitor: pg_settings has no neon.file_cache_size_limit: this is vanilla Postgres, which has no file cache; only the cgroup's memory is managed"
            );
            FileCacheState::Absent
        }
        Ok(Some(fc)) => {
            tracing::info!(
                max_mib = rules::mib(fc.max_bytes),
                "vm-monitor: Neon's file cache found; it is sized on every scale"
            );
            FileCacheState::Present(fc)
        }
        Err(e) => {
            tracing::warn!(error = %e, "vm-monitor: cannot tell whether Postgres has a file cache; managing only the cgroup's memory");
            FileCacheState::Absent
        }
    };
    let present = matches!(state, FileCacheState::Present(_));
    *lock(&mon.filecache) = state;
    if present {
        let usable = lock(&mon.scaling).usable;
        if let Err(e) = mon.resize_file_cache(usable).await {
            tracing::warn!(error = %e, "vm-monitor: cannot set the initial file cache size");
        }
    }
}
