//! Fault schedules, chosen per seed with proptest strategies (so a failing
//! schedule shrinks), and their application to the running world.
//!
//! Every fault starts inside the fault window and ends by
//! [`Schedule::heal_at`]; then everything is repaired (links, held
//! messages, knobs, crashed hosts bounced) and the scenario's convergence
//! phase runs on a healthy world.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use crate::shared::{PgPhase, Shared};
use crate::world::{COMPUTE, CPLANE, STORAGE};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Control plane and compute cannot talk (both ways, or one way).
    PartitionCplane { oneway: bool },
    /// Compute cannot reach storage.
    PartitionStorage,
    /// Messages between control plane and compute are held, then released.
    HoldCplane,
    /// Message latency up to `max_ms`.
    LatencySpike { max_ms: u64 },
    /// The control plane–compute link fails at random (message loss).
    Loss,
    /// The postmaster crashes in `phase`.
    PgCrash { phase: PgPhase },
    /// Every statement takes `delay_ms` longer.
    SlowQueries { delay_ms: u64 },
    /// Statements block (as on a lock) while the fault lasts.
    BlockedQueries,
    /// Postgres is unhealthy: statements hang until `statement_timeout`,
    /// even after the fault ends.
    HungQueries,
    /// SIGHUP finds a broken config and keeps the old one.
    ReloadFails,
    /// The storage host is down.
    StorageDown,
    /// The compute host crashes; it is restarted when the fault ends.
    HostCrash,
    /// Postgres takes this much longer to start.
    SlowStart { delay_ms: u64 },
}

impl FaultKind {
    /// The name the fault ledger knows it by.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::PartitionCplane { .. } | FaultKind::PartitionStorage => "partition",
            FaultKind::HoldCplane => "hold",
            FaultKind::LatencySpike { .. } => "latency",
            FaultKind::Loss => "loss",
            FaultKind::PgCrash { .. } => "pg_crash",
            FaultKind::SlowQueries { .. } => "slow_queries",
            FaultKind::BlockedQueries => "blocked_queries",
            FaultKind::HungQueries => "hung_queries",
            FaultKind::ReloadFails => "reload_fails",
            FaultKind::StorageDown => "storage_down",
            FaultKind::HostCrash => "host_crash",
            FaultKind::SlowStart { .. } => "slow_start",
        }
    }

    /// Whether it delays or loses messages (or the host that answers them).
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FaultKind::PartitionCplane { .. }
                | FaultKind::HoldCplane
                | FaultKind::LatencySpike { .. }
                | FaultKind::Loss
                | FaultKind::HostCrash
        )
    }
}

/// A fault from `at_ms` for `for_ms` of simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub at_ms: u64,
    pub for_ms: u64,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// A seed's faults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub faults: Vec<Fault>,
}

/// The fault window: faults start before this.
pub const WINDOW_MS: u64 = 2_000;

impl Schedule {
    /// When everything is repaired (ms); 0 for no faults.
    pub fn heal_at(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| f.at_ms + f.for_ms)
            .max()
            .unwrap_or(0)
    }

    pub fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn kind() -> impl Strategy<Value = FaultKind> {
    // Hung queries cost two simulated minutes (statement_timeout) each:
    // rarer than the others.
    prop_oneof![
        3 => any::<bool>().prop_map(|oneway| FaultKind::PartitionCplane { oneway }),
        3 => Just(FaultKind::PartitionStorage),
        3 => Just(FaultKind::HoldCplane),
        3 => (20u64..400).prop_map(|max_ms| FaultKind::LatencySpike { max_ms }),
        3 => Just(FaultKind::Loss),
        3 => prop_oneof![Just(PgPhase::Startup), Just(PgPhase::Query), Just(PgPhase::Reload)]
            .prop_map(|phase| FaultKind::PgCrash { phase }),
        3 => (10u64..2_000).prop_map(|delay_ms| FaultKind::SlowQueries { delay_ms }),
        3 => Just(FaultKind::BlockedQueries),
        1 => Just(FaultKind::HungQueries),
        3 => Just(FaultKind::ReloadFails),
        3 => Just(FaultKind::StorageDown),
        3 => Just(FaultKind::HostCrash),
        3 => (100u64..5_000).prop_map(|delay_ms| FaultKind::SlowStart { delay_ms }),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    (0..WINDOW_MS, 50u64..1_500, kind()).prop_map(|(at_ms, for_ms, kind)| Fault {
        at_ms,
        for_ms,
        kind,
    })
}

/// The strategy of schedules: about a third of the seeds get no fault.
pub fn schedules() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => prop::collection::vec(fault(), 1..=3),
    ]
    .prop_map(|mut faults| {
        faults.sort_by_key(|f| f.at_ms);
        Schedule { faults }
    })
}

/// A proptest runner whose randomness is the seed.
fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(!seed).to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// The value tree of `seed`'s schedule (its current value is the schedule).
pub fn tree(seed: u64) -> impl ValueTree<Value = Schedule> {
    schedules()
        .new_tree(&mut runner(seed))
        .expect("the schedule strategy never rejects")
}

/// The schedule of `seed`.
pub fn schedule(seed: u64) -> Schedule {
    tree(seed).current()
}

/// Shrinks a failing schedule: proptest's simplify/complicate walk, keeping
/// the smallest schedule for which `fails` still holds.
pub fn shrink(seed: u64, mut fails: impl FnMut(&Schedule) -> bool, budget: usize) -> Schedule {
    let mut t = tree(seed);
    let mut best = t.current();
    for _ in 0..budget {
        if fails(&t.current()) {
            best = t.current();
            if !t.simplify() {
                break;
            }
        } else if !t.complicate() {
            break;
        }
    }
    best
}

/// Applies the start (`start = true`) or end of `f` to the world.
pub fn apply(sim: &mut turmoil::Sim<'_>, shared: &Shared, f: &Fault, start: bool) {
    let t = u64::try_from(sim.elapsed().as_micros()).unwrap_or(u64::MAX);
    if start {
        shared.lock().ledger.record(f);
    }
    shared.emit_at(
        t,
        crate::events::Event::Fault {
            kind: f.kind,
            start,
            window_ms: (f.at_ms, f.at_ms + f.for_ms),
        },
    );
    match (f.kind, start) {
        (FaultKind::PartitionCplane { oneway: false }, true) => sim.partition(CPLANE, COMPUTE),
        (FaultKind::PartitionCplane { oneway: true }, true) => {
            sim.partition_oneway(COMPUTE, CPLANE)
        }
        (FaultKind::PartitionCplane { .. }, false) => sim.repair(CPLANE, COMPUTE),
        (FaultKind::PartitionStorage, true) => sim.partition(COMPUTE, STORAGE),
        (FaultKind::PartitionStorage, false) => sim.repair(COMPUTE, STORAGE),
        (FaultKind::HoldCplane, true) => sim.hold(CPLANE, COMPUTE),
        (FaultKind::HoldCplane, false) => sim.release(CPLANE, COMPUTE),
        (FaultKind::LatencySpike { max_ms }, true) => {
            sim.set_link_max_message_latency(CPLANE, COMPUTE, Duration::from_millis(max_ms))
        }
        (FaultKind::LatencySpike { .. }, false) => {
            sim.set_link_max_message_latency(CPLANE, COMPUTE, Duration::from_millis(2))
        }
        (FaultKind::Loss, true) => sim.set_link_fail_rate(CPLANE, COMPUTE, 0.05),
        (FaultKind::Loss, false) => {
            sim.set_link_fail_rate(CPLANE, COMPUTE, 0.0);
            sim.repair(CPLANE, COMPUTE);
        }
        (FaultKind::PgCrash { phase }, s) => shared.lock().knobs.crash_pg_at = s.then_some(phase),
        (FaultKind::SlowQueries { delay_ms }, s) => {
            shared.lock().knobs.query_delay = Duration::from_millis(if s { delay_ms } else { 0 })
        }
        (FaultKind::BlockedQueries, s) => shared.lock().knobs.blocked = s,
        (FaultKind::HungQueries, s) => shared.lock().knobs.hung = s,
        (FaultKind::ReloadFails, s) => shared.lock().knobs.reload_fails = s,
        (FaultKind::SlowStart { delay_ms }, s) => {
            shared.lock().knobs.pg_start_delay = Duration::from_millis(if s { delay_ms } else { 0 })
        }
        (FaultKind::StorageDown, true) => sim.crash(STORAGE),
        (FaultKind::StorageDown, false) => sim.bounce(STORAGE),
        (FaultKind::HostCrash, true) => sim.crash(COMPUTE),
        (FaultKind::HostCrash, false) => sim.bounce(COMPUTE),
    }
}

/// Repairs everything at the end of the fault window.
pub fn heal(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    sim.repair(CPLANE, COMPUTE);
    sim.repair(COMPUTE, STORAGE);
    sim.release(CPLANE, COMPUTE);
    shared.lock().knobs = Default::default();
    if !sim.is_host_running(STORAGE) {
        sim.bounce(STORAGE);
    }
}
