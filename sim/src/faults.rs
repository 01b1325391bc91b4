//! Fault schedules, chosen per seed with proptest strategies (so a failing
//! schedule shrinks), and their application to the running world.
//!
//! Every fault starts inside the fault window and ends by
//! [`Schedule::heal_at`]; then everything is repaired (links, held
//! messages, knobs, crashed hosts bounced) and the scenario's convergence
//! phase runs on a healthy world.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use crate::names::{COMPUTE, CPLANE, DURABLE_SAFEKEEPERS, STORAGE};
use crate::pgmodel::PgPhase;

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
    /// Safekeeper host `sk` (`names::DURABLE_SAFEKEEPERS[sk]`, one of the
    /// set a durable primary starts with) crashes; it is restarted when the
    /// fault ends (its WAL is durable).
    SafekeeperDown { sk: u8 },
    /// The compute cannot reach safekeeper host `sk` (nor it the compute).
    SafekeeperPartition { sk: u8 },
    /// Safekeeper `sk` takes `delay_ms` longer to flush each batch (it lags).
    SafekeeperLag { sk: u8, delay_ms: u64 },
}

impl FaultKind {
    /// The name the fault ledger knows it by.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::PartitionCplane { .. } => "partition_cplane",
            FaultKind::PartitionStorage => "partition_storage",
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
            FaultKind::SafekeeperDown { .. } => "safekeeper_down",
            FaultKind::SafekeeperPartition { .. } => "safekeeper_partition",
            FaultKind::SafekeeperLag { .. } => "safekeeper_lag",
        }
    }

    /// Every [`FaultKind::name`].
    pub const NAMES: &[&str] = &[
        "partition_cplane",
        "partition_storage",
        "hold",
        "latency",
        "loss",
        "pg_crash",
        "slow_queries",
        "blocked_queries",
        "hung_queries",
        "reload_fails",
        "storage_down",
        "host_crash",
        "slow_start",
        "safekeeper_down",
        "safekeeper_partition",
        "safekeeper_lag",
    ];

    /// The safekeeper host a safekeeper fault acts on.
    pub fn safekeeper(&self) -> Option<&'static str> {
        match self {
            FaultKind::SafekeeperDown { sk }
            | FaultKind::SafekeeperPartition { sk }
            | FaultKind::SafekeeperLag { sk, .. } => {
                DURABLE_SAFEKEEPERS.get(usize::from(*sk)).copied()
            }
            _ => None,
        }
    }

    /// The link a partition cuts (both ways), as the world applies it;
    /// `None` for a fault that is not a two-way partition. A scenario makes
    /// its own partitions of these kinds through its driver
    /// (`scenarios::driver`), recorded as the schedule's are.
    pub fn link(&self) -> Option<(&'static str, &'static str)> {
        match self {
            FaultKind::PartitionCplane { oneway: false } => Some((CPLANE, COMPUTE)),
            FaultKind::PartitionStorage => Some((COMPUTE, STORAGE)),
            FaultKind::SafekeeperPartition { .. } => self.safekeeper().map(|sk| (COMPUTE, sk)),
            _ => None,
        }
    }

    /// The partition that cuts the compute off from safekeeper host `host`
    /// (one of [`DURABLE_SAFEKEEPERS`]).
    pub fn safekeeper_partition(host: &str) -> Option<FaultKind> {
        let sk = DURABLE_SAFEKEEPERS.iter().position(|h| *h == host)?;
        Some(FaultKind::SafekeeperPartition {
            sk: u8::try_from(sk).ok()?,
        })
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

/// A safekeeper fault before its target is chosen.
#[derive(Debug, Clone, Copy)]
enum SkFault {
    Down,
    Partition,
    Lag(u64),
}

impl SkFault {
    fn on(self, sk: u8) -> FaultKind {
        match self {
            SkFault::Down => FaultKind::SafekeeperDown { sk },
            SkFault::Partition => FaultKind::SafekeeperPartition { sk },
            SkFault::Lag(delay_ms) => FaultKind::SafekeeperLag { sk, delay_ms },
        }
    }
}

/// How many safekeepers (of the three a durable primary starts with) a
/// schedule may fault: one, so that a majority stays (what the durable
/// invariants need to mean something), or now and then two, so that a
/// majority goes down at times (which must end in a failure the ledger
/// explains or a later convergence).
pub const SAFEKEEPER_TARGETS: u8 = 3;

/// The strategy of a durable-primary scenario's schedules
/// (the safekeeper half of [`durable_schedules`]): safekeepers down, cut
/// off from the compute or lagging; about a fifth of them hold none.
pub fn safekeeper_schedules() -> impl Strategy<Value = Schedule> {
    let kind = prop_oneof![
        Just(SkFault::Down),
        Just(SkFault::Partition),
        (50u64..500).prop_map(SkFault::Lag),
    ];
    let targets = (
        0..SAFEKEEPER_TARGETS,
        prop::option::weighted(0.25, 1..SAFEKEEPER_TARGETS),
    );
    (
        targets,
        prop::collection::vec((0..WINDOW_MS, 50u64..1_500, any::<bool>(), kind), 0..=3),
    )
        .prop_map(|((first, other), raw)| {
            let second = other.map_or(first, |o| (first + o) % SAFEKEEPER_TARGETS);
            let mut faults: Vec<Fault> = raw
                .into_iter()
                .map(|(at_ms, for_ms, pick, k)| Fault {
                    at_ms,
                    for_ms,
                    kind: k.on(if pick { second } else { first }),
                })
                .collect();
            faults.sort_by_key(|f| f.at_ms);
            Schedule { faults }
        })
}

/// A compute-side fault of a durable primary's world ([`FaultSet::Durable`]):
/// the kinds of [`schedules`] that act on the primary's host, its
/// Postgres and its pageserver. Not the control plane link's partitions,
/// holds and losses (a durable scenario's requests are not re-sent through
/// them), nor blocked or hung queries (the commit load's statements never
/// see them; only the start's catalog apply would).
fn durable_compute_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        prop_oneof![
            Just(PgPhase::Startup),
            Just(PgPhase::Query),
            Just(PgPhase::Reload)
        ]
        .prop_map(|phase| FaultKind::PgCrash { phase }),
        Just(FaultKind::PartitionStorage),
        Just(FaultKind::StorageDown),
        (20u64..400).prop_map(|max_ms| FaultKind::LatencySpike { max_ms }),
        (10u64..2_000).prop_map(|delay_ms| FaultKind::SlowQueries { delay_ms }),
        (100u64..5_000).prop_map(|delay_ms| FaultKind::SlowStart { delay_ms }),
        Just(FaultKind::HostCrash),
        Just(FaultKind::ReloadFails),
    ]
}

/// How many compute-side faults a durable schedule adds to its
/// safekeeper faults: 0 to this many.
pub const DURABLE_COMPUTE_FAULTS: usize = 2;

/// The strategy of a durable-primary scenario's schedules
/// ([`FaultSet::Durable`]): [`safekeeper_schedules`]' faults plus 0 to
/// [`DURABLE_COMPUTE_FAULTS`] compute-side ones
/// ([`durable_compute_kind`]), drawn from the one seeded tree (so a
/// failing schedule shrinks both), in time order.
pub fn durable_schedules() -> impl Strategy<Value = Schedule> {
    let compute = prop::collection::vec(
        (0..WINDOW_MS, 50u64..1_500, durable_compute_kind()).prop_map(|(at_ms, for_ms, kind)| {
            Fault {
                at_ms,
                for_ms,
                kind,
            }
        }),
        0..=DURABLE_COMPUTE_FAULTS,
    );
    (safekeeper_schedules(), compute).prop_map(|(sk, compute)| {
        let mut faults = sk.faults;
        faults.extend(compute);
        faults.sort_by_key(|f| f.at_ms);
        Schedule { faults }
    })
}

/// Which faults a scenario's schedules draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSet {
    /// [`schedules`]: the compute, its links, storage, the control plane.
    Compute,
    /// [`durable_schedules`]: a durable primary's safekeepers and 0 to 2
    /// faults of its compute side.
    Durable,
    /// No faults (a scenario the schedule does not reach yet).
    Quiet,
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

/// The value tree of `seed`'s schedule from `set` (its current value is
/// the schedule).
pub fn tree(seed: u64, set: FaultSet) -> Box<dyn ValueTree<Value = Schedule>> {
    let mut r = runner(seed);
    let tree: Result<Box<dyn ValueTree<Value = Schedule>>, _> = match set {
        FaultSet::Compute => schedules()
            .new_tree(&mut r)
            .map(|t| Box::new(t) as Box<dyn ValueTree<Value = Schedule>>),
        FaultSet::Durable => durable_schedules()
            .new_tree(&mut r)
            .map(|t| Box::new(t) as Box<dyn ValueTree<Value = Schedule>>),
        FaultSet::Quiet => Just(Schedule::default())
            .new_tree(&mut r)
            .map(|t| Box::new(t) as Box<dyn ValueTree<Value = Schedule>>),
    };
    tree.expect("the schedule strategies never reject")
}

/// The schedule of `seed` ([`FaultSet::Compute`]).
pub fn schedule(seed: u64) -> Schedule {
    schedule_of(seed, FaultSet::Compute)
}

/// The schedule of `seed` from `set`.
pub fn schedule_of(seed: u64, set: FaultSet) -> Schedule {
    tree(seed, set).current()
}

/// Shrinks a failing schedule: proptest's simplify/complicate walk, keeping
/// the smallest schedule for which `fails` still holds.
pub fn shrink(seed: u64, fails: impl FnMut(&Schedule) -> bool, budget: usize) -> Schedule {
    shrink_of(seed, FaultSet::Compute, fails, budget)
}

/// [`shrink`] of a schedule from `set`.
pub fn shrink_of(
    seed: u64,
    set: FaultSet,
    mut fails: impl FnMut(&Schedule) -> bool,
    budget: usize,
) -> Schedule {
    let mut t = tree(seed, set);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_name_is_listed() {
        let kinds = [
            FaultKind::PartitionCplane { oneway: false },
            FaultKind::PartitionStorage,
            FaultKind::HoldCplane,
            FaultKind::LatencySpike { max_ms: 1 },
            FaultKind::Loss,
            FaultKind::PgCrash {
                phase: PgPhase::Query,
            },
            FaultKind::SlowQueries { delay_ms: 1 },
            FaultKind::BlockedQueries,
            FaultKind::HungQueries,
            FaultKind::ReloadFails,
            FaultKind::StorageDown,
            FaultKind::HostCrash,
            FaultKind::SlowStart { delay_ms: 1 },
            FaultKind::SafekeeperDown { sk: 0 },
            FaultKind::SafekeeperPartition { sk: 0 },
            FaultKind::SafekeeperLag { sk: 0, delay_ms: 1 },
        ];
        let names: Vec<&str> = kinds.iter().map(FaultKind::name).collect();
        assert_eq!(names, FaultKind::NAMES);
    }

    #[test]
    fn a_partition_names_the_link_it_cuts() {
        assert_eq!(FaultKind::PartitionStorage.link(), Some((COMPUTE, STORAGE)));
        let sk4 = FaultKind::safekeeper_partition("sk4");
        assert_eq!(sk4, Some(FaultKind::SafekeeperPartition { sk: 3 }));
        assert_eq!(sk4.and_then(|k| k.link()), Some((COMPUTE, "sk4")));
        assert_eq!(FaultKind::safekeeper_partition("storage"), None);
        // One-way partitions and faults that cut nothing have no link.
        assert_eq!(FaultKind::PartitionCplane { oneway: true }.link(), None);
        assert_eq!(FaultKind::HostCrash.link(), None);
    }

    #[test]
    fn a_durable_schedule_faults_at_most_two_safekeepers_and_two_compute_sides() {
        let mut with_compute = 0;
        for seed in 0..200 {
            let s = schedule_of(seed, FaultSet::Durable);
            let mut hosts: Vec<&str> = s
                .faults
                .iter()
                .filter_map(|f| f.kind.safekeeper())
                .collect();
            let compute = s.faults.len() - hosts.len();
            assert!(compute <= DURABLE_COMPUTE_FAULTS, "{s:?}");
            with_compute += usize::from(compute > 0);
            assert!(s.faults.is_sorted_by_key(|f| f.at_ms), "{s:?}");
            hosts.sort_unstable();
            hosts.dedup();
            assert!(hosts.len() <= 2, "{s:?}");
            assert!(s.heal_at() <= WINDOW_MS + 1_500);
        }
        // About two thirds of the seeds fault the compute side too.
        assert!((100..170).contains(&with_compute), "{with_compute}");
        // The compute's schedules are what they were (seeds keep their faults).
        assert!((0..200).all(|seed| {
            schedule(seed)
                .faults
                .iter()
                .all(|f| f.kind.safekeeper().is_none())
        }));
    }
}
