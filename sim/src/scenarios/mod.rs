//! The scenarios: each a named function the control plane runs against the
//! compute (listed by `sim --list`).

mod cold_start;
mod driver;
pub mod durable;
pub mod fleet;
mod load;
mod memory;
mod notify;
pub mod promote;
mod reconfigure;
mod replica;
pub mod safekeeper_move;
mod terminate;

use std::future::Future;
use std::pin::Pin;

pub use driver::Driver;

use crate::specgen::SpecShape;

/// A scenario's body, run on the `cplane` host.
pub type Body = Pin<Box<dyn Future<Output = ()>>>;

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(Driver) -> Body,
    /// The hosts of its world and how the compute starts, per seed.
    pub topology: fn(u64) -> Topology,
}

/// What hosts a scenario's world has (storages, safekeepers, a second
/// compute) and how its compute process starts (spec at launch, fetched
/// from the control plane, autoscaling); the runner builds the world from
/// it, and its safekeepers decide the fault set (`runner::fault_set`).
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// `compute_ctl -S spec.json`.
    pub spec: Option<SpecShape>,
    /// `--control-plane-uri http://cplane:9090 --compute-id ...`.
    pub fetch_from_cplane: bool,
    /// `AUTOSCALING` set: the vm-monitor runs, Postgres in its cgroup.
    pub autoscaling: bool,
    /// A second storage host (`storage2`, following `storage`).
    pub two_storages: bool,
    /// A primary with safekeepers: the streaming safekeeper hosts
    /// (`crate::world::safekeeper`, [`crate::names::DURABLE_SAFEKEEPERS`], one per
    /// delay) with these flush delays (ms), the WAL model on, and the
    /// safekeeper faults plus 0 to 2 compute-side ones as the seed's
    /// schedule (`faults::durable_schedules`) beside the scenario's own.
    pub durable: Option<Vec<u64>>,
    /// A second compute host, [`crate::names::REPLICA`], with its own
    /// record (`SharedInner::second_compute`) over this world's storage.
    pub second_compute: bool,
    /// A fleet of this many computes on separate hosts
    /// ([`crate::names::fleet_host`]), each with its own record (the
    /// driver's fleet, [`Driver::with_fleet`]) and no fault schedule; the world then has
    /// no `compute` host and none of the hosts above but the storage.
    pub fleet: Option<usize>,
    /// `--max-ready-lag` of the `compute` host: a replica then asks its
    /// source for its position at every replication sample (none of the
    /// listed scenarios sets it; the determinism test does).
    pub max_ready_lag: Option<compute_ctl::params::MaxLag>,
}

fn plain(_: u64) -> Topology {
    Topology::default()
}

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "cold_start_from_cplane",
        about: "cold start: the compute fetches its spec from the control plane (after a few spec: null polls)",
        run: cold_start::from_cplane,
        topology: cold_start::fetching,
    },
    Scenario {
        name: "cold_start_launch_spec",
        about: "cold start with the spec given at launch (compute_ctl -S)",
        run: cold_start::launch_spec,
        topology: cold_start::with_spec,
    },
    Scenario {
        name: "cold_start_configure",
        about: "cold start from Empty with the spec delivered by POST /configure",
        run: cold_start::configure,
        topology: plain,
    },
    Scenario {
        name: "notify_after_migration",
        about: "repeated skip-flag notifies (new pageserver_connstring) under client load",
        run: notify::after_migration,
        topology: plain,
    },
    Scenario {
        name: "reconfigure_catalog",
        about: "reconfigure with catalog changes (new roles, passwords, renames, dropped database)",
        run: reconfigure::catalog_changes,
        topology: plain,
    },
    Scenario {
        name: "dry_run_then_apply",
        about: "a dry run (role options, memberships, extension moves) changes nothing; the apply then sends exactly its plan",
        run: reconfigure::dry_run_then_apply,
        topology: plain,
    },
    Scenario {
        name: "storage_move_and_catalog",
        about: "one spec moves storage and changes the catalog: reload before SQL",
        run: reconfigure::storage_and_catalog,
        topology: plain,
    },
    Scenario {
        name: "shard_split_burst",
        about: "a burst of concurrent notifies, as after a shard split",
        run: notify::shard_split_burst,
        topology: plain,
    },
    Scenario {
        name: "duplicated_reordered_notifies",
        about: "duplicated and reordered notifies: re-sends do no work, the latest wins",
        run: notify::duplicated_reordered,
        topology: plain,
    },
    Scenario {
        name: "replica_move_under_load",
        about: "a Replica compute moved between two storages (the second follows the first) under client reads",
        run: replica::move_under_load,
        topology: replica::two_storages,
    },
    Scenario {
        name: "replica_storage_failover",
        about: "the replica's storage is cut off, the second storage is promoted onto timeline 2, a notify moves the replica there",
        run: replica::failover,
        topology: replica::two_storages,
    },
    Scenario {
        name: "replica_move_to_lagging_storage",
        about: "a move to a storage behind the replica: no stream from behind, replay never goes back, streams once it caught up",
        run: replica::lagging,
        topology: replica::two_storages,
    },
    Scenario {
        name: "terminate_during_configure",
        about: "POST /terminate while a configure is in flight",
        run: terminate::during_configure,
        topology: plain,
    },
    Scenario {
        name: "memory_pressure",
        about: "autoscaling: load grows the cgroup, an agent answers late, drops, downscales under pressure",
        run: memory::pressure,
        topology: memory::autoscaled,
    },
    Scenario {
        name: "durable_kill_and_move",
        about: "a primary with 3 safekeepers under a commit load, killed and started again on a fresh disk, safekeepers running ahead and cut off: no acknowledged commit lost",
        run: durable::kill_and_move,
        topology: durable::topology,
    },
    Scenario {
        name: "durable_pageserver_down",
        about: "a primary with safekeepers: the pageserver down while commits continue, a start from a safekeeper, then from the pageserver behind",
        run: durable::pageserver_down,
        topology: durable::topology,
    },
    Scenario {
        name: "durable_safekeeper_move",
        about: "a primary with safekeepers moved to another set by notify (one member replaced or a whole new set, a member lagging or cut off, sometimes killed mid-move; a stale generation gets 409), then killed and started from the set in effect: no acknowledged commit lost, no postmaster restart",
        run: safekeeper_move::body,
        topology: safekeeper_move::topology,
    },
    Scenario {
        name: "durable_promote",
        about: "a replica on a second host follows a safekeeper while the primary commits; the primary is terminated, the replica promoted to its lsn, the load commits there: no acknowledged commit lost",
        run: promote::body,
        topology: promote::topology,
    },
    Scenario {
        name: fleet::NAME,
        about: "one control plane, 50 computes on separate hosts, a shard-split storm notifying all at once",
        run: fleet::storm,
        topology: fleet::topology,
    },
];

/// The durable-primary scenarios (`durable.rs`): out of the rotation,
/// with their own smoke; their schedules fault the safekeepers and the
/// compute side (`faults::FaultSet::Durable`).
pub const DURABLE: &[&str] = &[
    "durable_kill_and_move",
    "durable_pageserver_down",
    "durable_safekeeper_move",
    "durable_promote",
];

/// Scenarios that get no fault schedule (`faults::FaultSet::Quiet`), for
/// one whose faults show a known bug not yet fixed, if its seeds must be
/// green meanwhile. None now (the promote's timeline collision of
/// ARCHITECTURE.md, "Safekeeper move and promote", is fixed).
pub const QUIET: &[&str] = &[];

/// The scenarios that seeds go round when none is named: all but
/// [`DURABLE`] (so that adding those kept every other scenario's seeds,
/// and the seeds that catch each planted bug, as they were).
pub fn rotation() -> Vec<&'static Scenario> {
    ALL.iter().filter(|s| !DURABLE.contains(&s.name)).collect()
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// The first spec of most scenarios: a few roles and databases.
pub fn base_shape(d: &mut Driver, max_roles: usize) -> SpecShape {
    use rand::Rng;
    let roles = d.rng.random_range(1..=max_roles);
    let dbs = d.rng.random_range(1..=3);
    let shape = SpecShape::generate(d.seed, roles, dbs);
    d.stamp(shape)
}
