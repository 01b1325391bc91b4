//! What the hosts of one simulated world share with the harness: the trace,
//! the simulated Postgres' statement log and durable catalog, and the fault
//! knobs the fault schedule turns. Everything here lives outside the hosts,
//! so it survives a compute host crash (like Neon's storage does).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use compute_ctl::compute::Compute;
use compute_ctl::spec::ComputeSpec;

use crate::pgmodel::PgPhase;

use crate::log::EventLog;
use crate::pgmodel::catalog::CatalogModel;
use crate::world::env::SimEnv;

/// Simulated time since the start of the world, in microseconds.
pub fn now_us() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Fault knobs read by the simulated processes.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Extra delay before the postmaster accepts connections.
    pub pg_start_delay: Duration,
    /// Extra latency of every statement.
    pub query_delay: Duration,
    /// Statements wait (as on a lock) until the fault ends or
    /// statement_timeout cancels them.
    pub blocked: bool,
    /// Postgres is unhealthy: statements never finish; only
    /// statement_timeout ends them.
    pub hung: bool,
    /// SIGHUP finds an invalid config and keeps the old one.
    pub reload_fails: bool,
    /// The next postmaster to reach this phase crashes there.
    pub crash_pg_at: Option<PgPhase>,
}

/// One world's record: the event log, the fault ledger and knobs, the
/// harness's marks, then the state of the hosts (below `harness`).
#[derive(Default)]
pub struct SharedInner {
    /// The event log: trace, checkers, violations.
    pub log: EventLog,
    /// The faults that fired: what excuses a failure, a lost request, a
    /// missing reload or a stale config.
    pub ledger: crate::ledger::FaultLedger,
    /// The fault knobs the injected faults turn.
    pub knobs: Knobs,
    /// What the harness keeps here: not the state of any host.
    pub harness: Harness,
    // The hosts' state.
    pub catalog: CatalogModel,
    /// The config text the running postmaster last loaded.
    pub loaded_config: Option<String>,
    /// Base backups served by storage.
    pub basebackups: u64,
    /// The supervisor of the current boot of the compute host.
    pub compute: Option<Arc<Compute<SimEnv>>>,
    /// The supervisor of the current boot has exited (the production
    /// binary would be gone: requests to it cannot be answered).
    pub supervisor_exited: bool,
    /// The last spec applied without the skip flag: what the catalog must hold.
    pub catalog_spec: Option<Arc<ComputeSpec>>,
    /// Which boot of the compute host is current.
    pub boot: u64,
    /// WAL position of each storage host; it advances while the host runs.
    pub storage_wal: std::collections::BTreeMap<String, u64>,
    /// The simulated WAL receiver of a replica compute.
    pub receiver: Receiver,
    /// The last replay LSN the supervisor reported (`ComputeState::replication`).
    pub last_replay: Option<u64>,
    /// How far (bytes) a following storage stays behind; default 32 KiB.
    pub storage_lag: Option<u64>,
    /// Storages promoted (they stop following and write on timeline 2).
    pub promoted: std::collections::BTreeSet<String>,
    /// The WAL of a primary with safekeepers and of its safekeepers.
    pub wal: crate::wal::WalWorld,
    /// A second compute host's record ([`crate::names::REPLICA`], the
    /// promote scenario): its own Postgres, catalog, config and WAL, with
    /// the storage of this world ([`SharedInner::storage_world`]).
    pub second_compute: Option<Shared>,
    /// Set on a second compute's record: the world whose safekeepers and
    /// pageserver its base backup copies (`wal.source`).
    pub storage_world: Option<Shared>,
}

/// What the harness (runner, driver, scenarios) keeps beside the world:
/// the run's clock marks, request ids, measurements and host actions.
#[derive(Default)]
pub struct Harness {
    /// Set when the fault schedule is over and everything was repaired.
    pub healed_at: Option<u64>,
    /// Simulated time at the end of the run (for the final checks).
    pub end_us: u64,
    /// The id of the next control-plane request (`Event::RequestSent`).
    pub next_req: u64,
    /// Client-side round trip (µs) of every answered skip-flag notify.
    pub notify_round_trips_us: Vec<u64>,
    /// Hosts a scenario asks the runner to crash (`true`) or boot again
    /// (`false`), done before the next step.
    pub host_actions: Vec<(String, bool)>,
}

/// What the simulated WAL receiver does (what `pg_stat_wal_receiver` shows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receiver {
    /// `streaming`, `waiting`, or None when none runs.
    pub status: Option<&'static str>,
    /// `host:port` it streams from.
    pub sender: Option<String>,
    pub receive: u64,
    pub replay: u64,
    /// The timeline it receives.
    pub timeline: u32,
}

/// The handle every host and the harness hold.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<SharedInner>>);

impl Shared {
    pub fn new() -> Self {
        Self::default()
    }

    /// Once the world is dropped: the record lets go of the compute's
    /// supervisor. Its `SimEnv` holds this record, so the two would
    /// otherwise keep each other, and every seed's world, alive (a campaign
    /// grew by about 100 KB a seed until the machine ran out of memory).
    pub fn let_go_of_compute(&self) {
        self.lock().compute = None;
    }

    /// After [`let_go_of_compute`](Self::let_go_of_compute), with the world
    /// dropped: a violation if anything but the caller still holds this
    /// record, since a reference cycle would keep every seed's world alive.
    pub fn check_released(&self) {
        let holders = Arc::strong_count(&self.0);
        if holders > 1 {
            self.violation(format!(
                "the seed's world outlived its run: {} other holders of its record (a reference cycle?)",
                holders - 1
            ));
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SharedInner> {
        // The simulation is single-threaded; a poisoned lock means a panic
        // already failed the seed, so keep going with the data.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a trace event at the current simulated time.
    pub fn event(&self, kind: &str, fields: serde_json::Value) {
        let t = now_us();
        self.lock().log.trace.push(t, kind, fields);
    }

    /// Appends a trace event at `t_us` (for the harness, outside any host).
    pub fn event_at(&self, t_us: u64, kind: &str, fields: serde_json::Value) {
        self.lock().log.trace.push(t_us, kind, fields);
    }

    /// Appends `ev` to the event log at the current simulated time: traced,
    /// and seen by every checker.
    pub fn emit(&self, ev: crate::events::Event) {
        self.emit_at(now_us(), ev);
    }

    /// [`Shared::emit`] at `t_us` (for the harness, outside any host).
    pub fn emit_at(&self, t_us: u64, ev: crate::events::Event) {
        self.lock().log.append(t_us, &ev);
    }

    /// Ends the run: logs the world as it ends ([`crate::events::Event::End`],
    /// at `end_us`), then runs every checker's end-of-run check.
    pub fn finish(&self) {
        let end = crate::observed::WorldEnd::take(self);
        let t = self.lock().harness.end_us;
        self.emit_at(t, crate::events::Event::End(end));
        self.check_at_end();
    }

    /// Runs every checker's end-of-run check.
    pub fn check_at_end(&self) {
        let found = self.lock().log.at_end();
        for what in found {
            self.violation(what);
        }
    }

    /// Records an invariant violation (and traces it).
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        let t = now_us().max(self.lock().harness.end_us);
        self.lock().log.violation(t, what);
    }

    pub fn compute(&self) -> Option<Arc<Compute<SimEnv>>> {
        self.lock().compute.clone()
    }

    pub fn healed(&self) -> bool {
        self.lock().harness.healed_at.is_some()
    }

    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }
}
