//! A primary with safekeepers (issue 21) under a client load that writes
//! one commit per transaction and records each acknowledged one
//! ([`Event::CommitAcked`]). The compute host is killed and booted again
//! with an empty disk (a move: a fresh PGDATA, the same address), and after
//! every start the client reads back what the new primary holds
//! ([`Event::Readback`]). The checkers (`checkers/{acked,quorum_ack,fork,
//! history}.rs`) judge the event log. These scenarios make the faults
//! they test (kills, a safekeeper run ahead and cut off, the pageserver
//! down); the seed's schedule adds random safekeeper faults (down, cut
//! off, lagging) and 0 to 2 of the compute side (postmaster crashes,
//! the host crashing, the pageserver down or cut off, slow queries or
//! start, latency, a reload that does not take):
//! `faults::durable_schedules`.

use compute_ctl::compute::ComputeState;
use rand::Rng;

use super::driver;
use super::{Body, Driver, Topology, base_shape};
use crate::events::Event;
use crate::names::{COMPUTE, SAFEKEEPERS, STORAGE};
use crate::specgen::SpecShape;

/// The safekeepers' flush delays: one quick, one average, one slow.
pub fn topology(seed: u64) -> Topology {
    let j = |k: u64| (seed.wrapping_mul(0x9E37_79B9) >> (8 * k)) % 20;
    Topology {
        durable: Some(vec![j(0), 10 + 2 * j(1), 30 + 4 * j(2)]),
        ..Topology::default()
    }
}

pub(super) fn host_action(d: &Driver, host: &str, crash: bool) {
    d.ask_host_action(host, crash);
    d.event(
        if crash { "host_crash" } else { "host_boot" },
        serde_json::json!({"host": host}),
    );
}

fn sk(i: usize) -> &'static str {
    SAFEKEEPERS[i % SAFEKEEPERS.len()].0
}

/// The spec of a primary with the three safekeepers.
pub(super) fn durable_shape(d: &mut Driver, no_pageserver: bool) -> SpecShape {
    let mut s = base_shape(d, 4);
    s.deltas.clear();
    s.safekeepers = driver::safekeeper_connstrings();
    s.no_pageserver = no_pageserver;
    s
}

/// Configures a freshly booted compute with `spec` until it answers 200
/// (the host may not listen yet); then reads back its commits. A start
/// that failed on something a fault of the schedule explains (a
/// safekeeper down during the base backup or the sync, ...) is started
/// again once the faults are over, on a fresh host, as a control plane
/// would; a failure no fault explains stays for the checkers. So is a
/// start whose primary the schedule's `host_crash` took away before it
/// could be read back (its host comes back Empty, on a fresh disk): the
/// read-back of the next start checks every acknowledged commit.
pub(super) async fn start(d: &mut Driver, spec: &SpecShape) -> bool {
    d.intent = Some(spec.clone());
    for _ in 0..3 {
        // From the send: a 200 can be in flight (a latency spike) while the
        // host that sent it crashes, and arrive once it booted again Empty.
        let t0 = driver::now_us();
        if configure_until_answered(d, spec).await == Some(200) {
            if d.try_readback_on(COMPUTE).await {
                return true;
            }
            // Judged by `checkers/readback.rs`: only a host crash in the
            // meantime excuses it, and then the start is made again.
            let boot = d.boot();
            d.emit(Event::ReadbackGaveUp { boot, since_us: t0 });
            if !d.fault_fired_during("host_crash", t0, driver::now_us()) {
                return true;
            }
        } else if !failed_on_a_fault(d) {
            // Answered or not (a supervisor that stopped on the failure
            // answers no configure), a start that failed on a fault is
            // started again.
            return false;
        }
        d.healed().await;
        // The storage re-clones what the failed start reported diverged
        // (a start cannot get a quorum past one that never follows).
        reclone_diverged(d);
        host_action(d, COMPUTE, true);
        d.pause(50, 300).await;
        host_action(d, COMPUTE, false);
    }
    false
}

/// Configures until the compute answers, or failed on a fault, or 20 tries.
async fn configure_until_answered(d: &mut Driver, spec: &SpecShape) -> Option<u16> {
    for _ in 0..20 {
        match d.configure(spec).await.status() {
            Some(s) => return Some(s),
            None if failed_on_a_fault(d) => return None,
            None => d.pause(100, 200).await,
        }
    }
    None
}

/// The compute is Failed on something a fault that fired can cause.
fn failed_on_a_fault(d: &Driver) -> bool {
    is_failed_on_a_fault(d, d.observed_state())
}

/// The compute in `state` (this world's, or its second compute's, as the
/// harness sees it) is Failed on something a fault of this world that
/// fired can cause.
pub(super) fn is_failed_on_a_fault(d: &Driver, state: Option<ComputeState>) -> bool {
    let Some(st) = state else {
        return false;
    };
    let kind = st
        .failure
        .as_ref()
        .map(compute_ctl::compute::FailReason::kind);
    st.status == compute_ctl::state::ComputeStatus::Failed
        && kind.is_some_and(|k| d.explains_failure(k))
}

/// The control plane's look at the primary before its next step: once
/// the faults are over, a primary that the schedule took away (its host
/// crashed and came back Empty, on a fresh disk, or it is Failed on a
/// fault, but not on a safekeeper move whose supervisor lives on: that
/// one keeps Postgres running on the old set) is started again from
/// `spec` on a fresh host, as a control plane would. Whether it was.
pub(super) async fn restart_if_lost(d: &mut Driver, spec: &SpecShape) -> bool {
    let lost = |d: &Driver| {
        let Some(st) = d.observed_state() else {
            return false;
        };
        let kind = st
            .failure
            .as_ref()
            .map(compute_ctl::compute::FailReason::kind);
        match st.status {
            compute_ctl::state::ComputeStatus::Empty => d.fault_fired("host_crash"),
            compute_ctl::state::ComputeStatus::Failed => kind.is_some_and(|k| {
                (k != "safekeeper_move" || d.supervisor_exited()) && d.explains_failure(k)
            }),
            _ => false,
        }
    };
    if d.fault_fired("host_crash") || lost(d) {
        // A host crash may still be under way (the host comes back when
        // its fault ends).
        d.healed().await;
    }
    if !lost(d) {
        return false;
    }
    host_action(d, COMPUTE, true);
    d.pause(50, 300).await;
    host_action(d, COMPUTE, false);
    // The same spec (operation and all): the control plane's intent has
    // not changed, only the host.
    start(d, spec).await;
    reclone_diverged(d);
    true
}

/// Kills the compute and boots it again (a move to a fresh host), with
/// `cut` partitioned from it during the start; configures it.
async fn kill_and_start(d: &mut Driver, spec: &SpecShape, cut: Option<usize>) {
    host_action(d, COMPUTE, true);
    d.pause(50, 300).await;
    for (name, _) in SAFEKEEPERS {
        d.repair_safekeeper(name);
    }
    if let Some(c) = cut {
        d.partition_safekeeper(sk(c));
    }
    host_action(d, COMPUTE, false);
    let spec = d.stamp(spec.clone());
    start(d, &spec).await;
    d.pause(200, 600).await;
    if let Some(c) = cut {
        d.repair_safekeeper(sk(c));
    }
    reclone_diverged(d);
}

/// The storage's job, which compute_ctl never does: a safekeeper that can
/// never follow the running primary (its WAL goes past the fork on an
/// older timeline) is re-cloned from the most advanced safekeeper that
/// streams. Without it a diverged safekeeper stays so for good, and one
/// more cut off leaves no quorum.
pub(super) fn reclone_diverged(d: &Driver) {
    let recloned: Vec<Event> = d.with_wal(|w| {
        if w.compute.in_recovery {
            return Vec::new();
        }
        let diverged: Vec<String> = w
            .safekeepers
            .iter()
            .filter(|(_, s)| !s.can_follow(&w.compute.wal))
            .map(|(n, _)| n.clone())
            .collect();
        let donor = w
            .safekeepers
            .iter()
            .filter(|(n, _)| !diverged.contains(n))
            .max_by_key(|(_, s)| s.wal.end())
            .map(|(_, s)| s.wal.clone());
        let Some(donor) = donor else {
            return Vec::new();
        };
        diverged
            .into_iter()
            .filter_map(|n| {
                let sk = w.safekeepers.get_mut(&n)?;
                sk.wal = donor.clone();
                // A clone starts from the donor's restartpoint on its timeline.
                sk.restartpoint_tli = Some(donor.segment_tli());
                Some(Event::SafekeeperRecloned {
                    name: n,
                    lsn: donor.end(),
                    chain: donor.chain(),
                    ids: donor.ids(),
                })
            })
            .collect()
    });
    for ev in recloned {
        d.emit(ev);
    }
}

pub fn kill_and_move(mut d: Driver) -> Body {
    Box::pin(async move {
        let no_pageserver = d.rng.random_bool(0.7);
        let spec = durable_shape(&mut d, no_pageserver);
        start(&mut d, &spec).await;
        let clients = d.rng.random_range(1..=2);
        let _commits = d.start_commits(clients);
        for _ in 0..d.rng.random_range(2..=3) {
            d.pause(300, 900).await;
            // Sometimes one safekeeper runs ahead: the compute loses the
            // other two for a while, commits stall and only it gets WAL.
            let ahead = d.rng.random_bool(0.5).then(|| d.rng.random_range(0..3));
            if let Some(a) = ahead {
                d.partition_safekeeper(sk(a + 1));
                d.partition_safekeeper(sk(a + 2));
                d.pause(100, 400).await;
            }
            // The new host cannot reach the one ahead during its start (a
            // safekeeper cut off at random is the schedule's
            // `safekeeper_partition`).
            let cut = ahead.filter(|_| d.rng.random_bool(0.7));
            kill_and_start(&mut d, &spec, cut).await;
        }
        d.pause(300, 800).await;
        d.readback().await;
        d.converge().await;
    })
}

pub fn pageserver_down(mut d: Driver) -> Body {
    Box::pin(async move {
        let spec = durable_shape(&mut d, false);
        start(&mut d, &spec).await;
        let clients = d.rng.random_range(1..=2);
        let _commits = d.start_commits(clients);
        d.pause(200, 600).await;
        host_action(&d, STORAGE, true);
        // Commits go on: they wait for the safekeepers, not the pageserver.
        d.pause(300, 1000).await;
        // A start while it is down takes the backup from a safekeeper.
        kill_and_start(&mut d, &spec, None).await;
        host_action(&d, STORAGE, false);
        d.pause(500, 1500).await;
        // And from the pageserver again once it is back (behind: the
        // compute catches up from the most advanced safekeeper).
        kill_and_start(&mut d, &spec, None).await;
        d.pause(300, 800).await;
        d.readback().await;
        d.converge().await;
    })
}
