//! Fault injection: turns the start and end of a scheduled fault into the
//! world's partitions, crashes and knobs, and records it in the ledger and
//! the event log. The schedule itself (`crate::faults`) is plain data.

use std::time::Duration;

use crate::faults::{Fault, FaultKind};
use crate::names::{COMPUTE, CPLANE, STORAGE};
use crate::world::shared::Shared;

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
            window_ms: (f.at_ms, Some(f.at_ms + f.for_ms)),
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
        (FaultKind::SafekeeperDown { .. }, s) => {
            if let Some(sk) = safekeeper_here(shared, &f.kind) {
                if s {
                    sim.crash(sk);
                } else if !sim.is_host_running(sk) {
                    sim.bounce(sk);
                }
            }
        }
        (FaultKind::SafekeeperPartition { .. }, s) => {
            if let Some(sk) = safekeeper_here(shared, &f.kind) {
                if s {
                    sim.partition(COMPUTE, sk);
                } else {
                    sim.repair(COMPUTE, sk);
                }
            }
        }
        (FaultKind::SafekeeperLag { delay_ms, .. }, s) => {
            if let Some(sk) = safekeeper_here(shared, &f.kind) {
                if let Some(w) = shared.lock().wal.safekeepers.get_mut(sk) {
                    w.fault_delay_ms = if s { delay_ms } else { 0 };
                }
            }
        }
    }
}

/// The safekeeper host a safekeeper fault acts on, if this world has it
/// (a durable primary's: `world::add_durable_safekeepers`); a world
/// without it ignores the fault.
fn safekeeper_here(shared: &Shared, kind: &FaultKind) -> Option<&'static str> {
    let sk = kind.safekeeper()?;
    shared.lock().wal.safekeepers.contains_key(sk).then_some(sk)
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
    // A safekeeper fault's own end already undid it; this catches one that
    // overlapped another on the same host. Partitions the scenario made
    // itself are left alone.
    let sks: Vec<String> = {
        let mut sh = shared.lock();
        sh.wal
            .safekeepers
            .iter_mut()
            .map(|(name, w)| {
                w.fault_delay_ms = 0;
                name.clone()
            })
            .collect()
    };
    for sk in sks {
        if !sim.is_host_running(sk.as_str()) {
            sim.bounce(sk.as_str());
        }
    }
}
