//! A primary with three safekeepers under the commit load is moved to
//! another safekeeper set by notify (`/configure` with
//! `skip_pg_catalog_updates`, a changed `safekeeper_connstrings` and a
//! higher `safekeepers_generation`): one member replaced (`abc` -> `abd`) or
//! a whole new set, sometimes with a member lagging or cut off during the
//! move, sometimes with the compute killed in the middle of it. A stale
//! generation gets 409 and changes nothing. Then the compute is killed and
//! started again from the set the control plane last had confirmed, and the
//! client reads back every acknowledged commit.
//!
//! The product side is `compute/safekeeper_move.rs` (the joint quorum).
//! The checkers: `acked`, `quorum_ack` (the majority of the set a restart
//! would sync), `fork`, `history`, `move_restart` (a move never
//! restarts the postmaster), `move_reload` (a move is a notify: no
//! catalog SQL; a stale one no reload), `move_answered` (answered 200
//! unless a fault explains why not), `move_generation` (a stale
//! generation gets 409) and `move_in_effect` (the confirmed set stays in
//! effect), fed by [`Event::SafekeeperMoveSent`],
//! [`Event::SafekeeperMoveAnswered`], [`Event::SafekeeperSetConfirmed`]
//! and what the control plane sees of the primary ([`Event::PrimarySeen`]).

use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;

use super::driver::{self, now_us, safekeeper_connstring};
use super::durable::{durable_shape, host_action, reclone_diverged, restart_if_lost, start};
use super::{Body, Driver, Topology};
use crate::events::Event;
use crate::http::Outcome;
use crate::names::{COMPUTE, DURABLE_SAFEKEEPERS};
use crate::specgen::SpecShape;

/// How long the control plane waits for the answer of a move whose
/// compute it killed.
const KILLED_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Six safekeeper hosts (the first three the starting set), each with a
/// flush delay from the seed: some quick, some slow.
pub fn topology(seed: u64) -> Topology {
    let j = |k: u64| (seed.wrapping_mul(0x9E37_79B9) >> (7 * k)) % 20;
    Topology {
        durable: Some((0..6).map(|k| j(k) * (1 + k % 3) * 2).collect()),
        ..Topology::default()
    }
}

fn names(set: &[&'static str]) -> Vec<String> {
    set.iter().map(|s| s.to_string()).collect()
}

fn with_set(d: &mut Driver, spec: &SpecShape, set: &[&'static str], generation: u32) -> SpecShape {
    let mut s = spec.clone();
    s.safekeepers = set.iter().map(|h| safekeeper_connstring(h)).collect();
    s.safekeepers_generation = Some(generation);
    s.skip_catalog = true;
    d.stamp(s)
}

/// The control plane confirms `spec` (its set and generation) as the one
/// it wants in effect.
fn confirm(d: &Driver, spec: &SpecShape) {
    d.emit(Event::SafekeeperSetConfirmed {
        op: spec.operation,
        safekeepers: spec.safekeepers.clone(),
        generation: spec.safekeepers_generation,
    });
}

/// The storage's commit LSN counts the majorities of `sets` (see
/// `crate::wal::WalWorld::quorum_sets`).
fn storage_counts(d: &Driver, sets: &[&[&'static str]]) {
    d.with_wal(|w| w.quorum_sets = sets.iter().map(|s| names(s)).collect());
}

/// The world the scenario runs in.
struct Move {
    /// The set the control plane last had confirmed.
    set: Vec<&'static str>,
    /// Hosts never used yet.
    fresh: Vec<&'static str>,
    generation: u32,
    spec: SpecShape,
}

fn repair_all(d: &Driver) {
    for h in DURABLE_SAFEKEEPERS {
        d.repair_safekeeper(h);
    }
}

/// Kills the compute and starts it again from `m.spec` (its set), with
/// `cut` partitioned from it during the start.
async fn kill_and_start(d: &mut Driver, m: &Move, cut: Option<&'static str>) {
    host_action(d, COMPUTE, true);
    d.pause(50, 300).await;
    repair_all(d);
    if let Some(c) = cut {
        d.partition_safekeeper(c);
    }
    host_action(d, COMPUTE, false);
    let spec = d.stamp(m.spec.clone());
    start(d, &spec).await;
    d.pause(200, 600).await;
    if let Some(c) = cut {
        d.repair_safekeeper(c);
    }
    reclone_diverged(d);
}

/// One move of `m` to a new set; `kill` kills the compute while the move
/// runs (then the control plane starts it again from the set it had).
async fn move_once(d: &mut Driver, m: &mut Move, kill: bool) {
    // A primary the schedule took away is started again first (a move
    // sent to a host that came back Empty would start it, not move it).
    restart_if_lost(d, &m.spec).await;
    // The new set: one member replaced by a fresh host, or (if three fresh
    // hosts are left, sometimes) a whole new set.
    let whole = m.fresh.len() >= 3 && d.rng.random_bool(0.4);
    let mut new: Vec<&'static str> = if whole {
        m.fresh.drain(..3).collect()
    } else {
        let mut keep = m.set.clone();
        keep.shuffle(&mut d.rng);
        keep.truncate(2);
        keep.push(m.fresh.remove(0));
        keep
    };
    new.sort_unstable();
    let old = m.set.clone();
    // A member of either set lagging or cut off while the move runs (one
    // only, so that a quorum of each set stays reachable).
    let union: Vec<&'static str> = old
        .iter()
        .chain(new.iter().filter(|n| !old.contains(n)))
        .copied()
        .collect();
    let trouble = d
        .rng
        .random_bool(0.5)
        .then(|| union[d.rng.random_range(0..union.len())]);
    let cut = trouble.is_some() && d.rng.random_bool(0.5);
    let mut slowed = None;
    if let Some(t) = trouble {
        if cut {
            d.partition_safekeeper(t);
        } else {
            d.with_wal(|w| {
                if let Some(sk) = w.safekeepers.get_mut(t) {
                    slowed = Some((t, sk.flush_delay_ms));
                    sk.flush_delay_ms += 150;
                }
            });
        }
    }

    let generation = m.generation + 1;
    let spec = with_set(d, &m.spec, &new, generation);
    let boot = d.boot();
    d.emit(Event::SafekeeperMoveSent {
        boot,
        op: spec.operation,
        from: names(&old),
        to: names(&new),
        generation: Some(generation),
        killed: kill,
    });
    storage_counts(d, &[&old, &new]);
    // What a failed move must leave in effect (`checkers/move_in_effect.rs`).
    d.observe_primary();
    let t0 = now_us();
    let out = if kill {
        // The control plane's request races the kill: the answer may be lost.
        let req = tokio::spawn(d.configure_abandoning(spec.configure_body(), t0));
        d.pause(5, 400).await;
        host_action(d, COMPUTE, true);
        // A crashed host answers nothing: the control plane gives up.
        match driver::timeout(KILLED_ANSWER_WAIT, req).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => Outcome::Transport(e.to_string()),
            Err(_) => Outcome::Transport("abandoned: the compute was killed".into()),
        }
    } else {
        let mut out = d.configure(&spec).await;
        // An answer a network fault swallowed, from a compute still
        // there: the control plane sends the move again once the faults
        // are over (a re-send of a move already made changes nothing).
        for _ in 0..3 {
            if out.status().is_some() || !d.excuses_lost_request(t0) {
                break;
            }
            d.healed().await;
            if d.observed_state().map(|st| st.status)
                == Some(compute_ctl::state::ComputeStatus::Empty)
            {
                break;
            }
            out = d.configure(&spec).await;
        }
        out
    };
    let status = out.status();
    d.emit(Event::SafekeeperMoveAnswered {
        boot,
        op: spec.operation,
        status,
    });
    if let Some(c) = trouble.filter(|_| cut) {
        d.repair_safekeeper(c);
    }
    if let Some((t, delay)) = slowed {
        d.with_wal(|w| {
            if let Some(sk) = w.safekeepers.get_mut(t) {
                sk.flush_delay_ms = delay;
            }
        });
    }
    if status == Some(200) {
        m.set = new;
        m.generation = generation;
        m.spec = spec;
        confirm(d, &m.spec);
        storage_counts(d, &[&m.set]);
        if !kill {
            // The move's set in effect (`checkers/move_in_effect.rs`).
            d.observe_primary();
        }
    } else {
        storage_counts(d, &[&m.set]);
        if !kill {
            // Judged by `checkers/move_answered.rs` (and, when it failed
            // on the move, `move_in_effect.rs`) with the ledger's excuses.
            d.observe_primary();
            after_a_failed_move(d, m, t0).await;
        }
    }
    if kill {
        // A start from the set the control plane had confirmed.
        d.pause(50, 300).await;
        repair_all(d);
        host_action(d, COMPUTE, false);
        let s = d.stamp(m.spec.clone());
        start(d, &s).await;
        d.pause(200, 600).await;
        reclone_diverged(d);
    }
}

/// What the control plane does after a move (sent at `t0`) not answered
/// 200 (the checkers judge the outcome: `move_answered`, with the
/// ledger's excuses, and `move_in_effect`):
/// - the compute is Failed on the move (`safekeeper_move`, e.g. its
///   joint config's reload did not take under `reload_fails`) and its
///   supervisor lives: the product put the old set's config back;
///   nothing to do;
/// - the compute is Failed on another failure the ledger explains, or
///   on the move with its supervisor gone (the postmaster crashed in the
///   joint config's reload), or its host crashed, or no answer came
///   through a network fault: the control plane starts it again from the
///   set it had confirmed once the faults are over;
/// - anything else is a violation (`move_answered`): left as it is.
async fn after_a_failed_move(d: &mut Driver, m: &Move, t0: u64) {
    let st = d.observed_state();
    let kind = st
        .as_ref()
        .and_then(|st| st.failure.as_ref())
        .map(compute_ctl::compute::FailReason::kind);
    let failed = st
        .as_ref()
        .is_some_and(|st| st.status == compute_ctl::state::ComputeStatus::Failed);
    let explained = failed && kind.is_some_and(|k| d.explains_failure(k));
    let lost = d.excuses_lost_request(t0);
    if explained && kind == Some("safekeeper_move") && !d.supervisor_exited() {
        return;
    }
    if explained || lost {
        restart_if_lost(d, &m.spec).await;
    }
}

/// A notify with an older `safekeepers_generation` naming another set:
/// 409, and nothing changes (spec in effect, no reload).
async fn stale_generation(d: &mut Driver, m: &Move) {
    restart_if_lost(d, &m.spec).await;
    let older = m.generation.saturating_sub(1);
    let mut other: Vec<&'static str> = DURABLE_SAFEKEEPERS[..3].to_vec();
    if other == m.set {
        other = DURABLE_SAFEKEEPERS[3..].to_vec();
    }
    let stale = with_set(d, &m.spec, &other, older);
    let boot = d.boot();
    d.emit(Event::SafekeeperMoveSent {
        boot,
        op: stale.operation,
        from: names(&m.set),
        to: names(&other),
        generation: Some(older),
        killed: false,
    });
    let out = d.configure(&stale).await;
    d.emit(Event::SafekeeperMoveAnswered {
        boot,
        op: stale.operation,
        status: out.status(),
    });
    // 409 and the confirmed set still in effect: `checkers/move_generation.rs`
    // and `move_in_effect.rs`.
    d.observe_primary();
}

pub fn body(mut d: Driver) -> Body {
    Box::pin(async move {
        let no_pageserver = d.rng.random_bool(0.5);
        let mut first = durable_shape(&mut d, no_pageserver);
        let set: Vec<&'static str> = DURABLE_SAFEKEEPERS[..3].to_vec();
        first.safekeepers = set.iter().map(|h| safekeeper_connstring(h)).collect();
        first.safekeepers_generation = Some(1);
        let mut m = Move {
            set,
            fresh: DURABLE_SAFEKEEPERS[3..].to_vec(),
            generation: 1,
            spec: first.clone(),
        };
        storage_counts(&d, &[&m.set]);
        confirm(&d, &first);
        start(&mut d, &first).await;
        let clients = d.rng.random_range(1..=2);
        let _commits = d.start_commits(clients);
        let moves = d.rng.random_range(1..=2);
        for i in 0..moves {
            if m.fresh.is_empty() {
                break;
            }
            d.pause(300, 900).await;
            let kill = d.rng.random_bool(0.25);
            move_once(&mut d, &mut m, kill).await;
            if i == 0 && !kill {
                stale_generation(&mut d, &m).await;
            }
        }
        d.pause(300, 900).await;
        // A kill and a start from the set in effect, sometimes with one
        // member cut off during the start.
        let cut = d
            .rng
            .random_bool(0.3)
            .then(|| m.set[d.rng.random_range(0..m.set.len())]);
        kill_and_start(&mut d, &m, cut).await;
        d.pause(300, 800).await;
        d.readback().await;
        d.converge().await;
    })
}
