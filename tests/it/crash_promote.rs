//! The node dies at every phase of a `POST /promote` that does work, on
//! real Postgres (issue 21, "A primary killed or moved loses no
//! acknowledged write").
//!
//! One story runs every trial, on one set of three safekeepers
//! (`support::safekeepers`), as `crash_durable` does:
//!
//! 1. the running primary (with the safekeepers) commits rows, each
//!    acknowledged one recorded; a Replica compute R starts beside it
//!    (its base backup and upstream the first safekeeper), launched with
//!    the failpoints of the trial's phase (its entry and the next phase's
//!    entry); a client writes on R all along (refused while R is in
//!    recovery, then waiting for the quorum once R is promoted: each
//!    acknowledged row is recorded too);
//! 2. the primary terminates (`/terminate`, its `lsn`), and `POST
//!    /promote` with that `wal_flush_lsn` is sent to R; compute_ctl stops
//!    at the phase's entry, is let go, and the node (compute_ctl and every
//!    Postgres of it) is killed with -9 a seeded random part of the phase
//!    in (or at its end); the promote never answers;
//! 3. the control plane starts a new primary elsewhere (a fresh PGDATA and
//!    port) with the same safekeepers. Measured, each able to fail the
//!    trial: acknowledged rows lost (must be 0), the quorum holds, 5 new
//!    writes are acknowledged, and every safekeeper replays up to the new
//!    primary's flush LSN after them (none left diverged).
//!
//! The new primary is the running primary of the next trial. The windows
//! come from a calibration run, a clean promote at the story's start (which
//! makes its first primary): its answer's timings, or a fixed 10 ms for
//! the two short phases it does not time on their own.
//!
//! `just test` runs one cell drawn from the seed (`COMPUTE_CTL_CHAOS_SEED`,
//! printed); `just chaos` (`COMPUTE_CTL_CHAOS_SCALE=full`) every cell
//! [`FULL_TRIALS`] times. Each trial is a row of `crash_promote.jsonl`.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::crash_durable::{Phase, Story, kill_in_phase, launch_with};
use crate::durable_primary::{insert, present, spec, start, wait_all_streaming};
use crate::promote::{promote, replica_spec};
use crate::support::chaos;
use crate::support::failpoint::wait_stopped;
use crate::support::safekeepers::Safekeepers;

const WITHIN: Duration = Duration::from_secs(90);
/// Rows written on the recovered primary.
const NEW_WRITES: i32 = 5;
/// Every cell's trials under `just chaos`, as the x20: a trial took
/// 1.3–2.6 s on this 2-core machine when nothing else ran (30 trials in
/// 61 s), so the 120 take about 4 minutes; beside another build (load 3–5)
/// a trial took 3–12 s and the 120 took 18.5 minutes. Lower it if `just
/// chaos` must share the machine.
const FULL_TRIALS: usize = 20;
/// The window of a phase the calibration does not time on its own: the
/// config write (write, SIGHUP, the reload checked) and the quorum put in
/// force. Both took under 15 ms here (kills drawn 15–50 ms in all landed
/// at their end); a kill drawn past a phase's end lands at that end.
const FIXED_WINDOW: Duration = Duration::from_millis(10);
/// The first id the client on the replica writes in a trial is
/// `next_id`; it writes at most this many.
const ID_SPAN: i32 = 100_000;

/// The promote's phases that do work, each ended by the next one's entry,
/// with the calibration answer's timing that is its window: its own for
/// `lsn_wait`, `announce` and `quorum`; `pg_promote_time_ms` for
/// `pg_promote` (it also counts the two phases before, which are short);
/// none, so [`FIXED_WINDOW`], for `write_config` and `quorum_in_force`. A
/// kill drawn past a phase's real end lands at that end (the next
/// failpoint stops compute_ctl there) and is reported so.
const PROMOTE_PHASES: [Phase; 6] = [
    Phase {
        name: "promote.lsn_wait",
        end: "promote.write_config",
        timing: Some("lsn_wait_time_ms"),
    },
    Phase {
        name: "promote.write_config",
        end: "promote.quorum_in_force",
        timing: None,
    },
    Phase {
        name: "promote.quorum_in_force",
        end: "promote.pg_promote",
        timing: None,
    },
    Phase {
        name: "promote.pg_promote",
        end: "promote.announce",
        timing: Some("pg_promote_time_ms"),
    },
    Phase {
        name: "promote.announce",
        end: "promote.quorum",
        timing: Some("announce_time_ms"),
    },
    Phase {
        name: "promote.quorum",
        end: "promote.catalog",
        timing: Some("quorum_time_ms"),
    },
];

impl Story {
    /// Terminates the primary; its `lsn`.
    async fn terminate_primary(&self) -> String {
        let reply = self.running.terminate("fast", None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["lsn"]
            .as_str()
            .expect("a terminate lsn")
            .to_string()
    }
}

/// Writes ids from `first` on `replica`, one per transaction, until `stop`
/// or the session dies: a write refused because the replica is still in
/// recovery is tried again; the acknowledged ids are returned.
async fn write_through_the_promote(
    client: tokio_postgres::Client,
    first: i32,
    stop: Arc<AtomicBool>,
) -> BTreeSet<i32> {
    let mut ok = BTreeSet::new();
    let mut id = first;
    while !stop.load(Ordering::Relaxed) && id < first + ID_SPAN {
        match client
            .execute("INSERT INTO acked VALUES ($1)", &[&id])
            .await
        {
            Ok(_) => {
                ok.insert(id);
                id += 1;
            }
            Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                // A retry interval while the replica is in recovery, not
                // synchronisation (the kill ends the loop).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The node's death ends the session.
            Err(_) => break,
        }
    }
    ok
}

/// How many safekeepers have not replayed up to `lsn` by the deadline.
async fn behind(sks: &Safekeepers, lsn: &str) -> i64 {
    chaos::settle(WITHIN, || async {
        let mut n = 0;
        for sk in &sks.members {
            let sql = format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}', false)");
            if sk.value(&sql).await != "t" {
                n += 1;
            }
        }
        Some(n)
    })
    .await
    .expect("every safekeeper answers")
}

/// One trial of `phase`.
async fn trial(story: &mut Story, phase: Phase, n: usize) -> Value {
    let t_trial = Instant::now();
    story.write().await;
    let (delay, window) = story.delay(phase, FIXED_WINDOW);
    let t_replica = Instant::now();
    let replica = launch_with(
        replica_spec(&story.sks, &format!("replica-{n}")),
        Some(phase),
    );
    replica.wait_status("running", WITHIN).await;
    let replica_start_ms = t_replica.elapsed().as_millis() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let first = story.next_id;
    story.next_id += ID_SPAN;
    let writing = tokio::spawn(write_through_the_promote(
        replica.sql("postgres", "writer").await,
        first,
        stop.clone(),
    ));
    let t_terminate = Instant::now();
    let lsn = story.terminate_primary().await;
    let terminate_ms = t_terminate.elapsed().as_millis() as u64;
    replica.send_promote_into_fault(&spec(&story.sks, &format!("promote-{n}")), &lsn);
    wait_stopped(&replica, phase.name).await;
    let landed = kill_in_phase(&replica, delay).await;
    stop.store(true, Ordering::Relaxed);
    let during = writing.await.unwrap();
    story.acked.extend(during.iter().copied());

    // The control plane starts a primary elsewhere with the same safekeepers.
    let (recovered, took) = start(&spec(&story.sks, &format!("recovered-{n}"))).await;
    let got = present(&recovered).await;
    let lost: Vec<i32> = story.acked.difference(&got).copied().collect();
    let st = wait_all_streaming(&recovered).await;
    let client = recovered.sql("postgres", "writer").await;
    let mut new_writes = 0;
    for _ in 0..NEW_WRITES {
        let id = story.next_id;
        story.next_id += 1;
        if insert(&client, id).await {
            story.acked.insert(id);
            new_writes += 1;
        }
    }
    let flush = recovered
        .sql_value("SELECT pg_current_wal_flush_lsn()")
        .await;
    let diverged = behind(&story.sks, &flush).await;
    story.running = recovered;
    story.row(
        (delay, window, landed),
        &lost,
        json!({
            "acknowledged_during_promote": during.len(),
            "quorum_holds": st["quorum"]["holds"] == true,
            "new_writes_acknowledged": new_writes,
            "safekeepers_behind": diverged,
            "flush_lsn": flush,
            "converged": st["quorum"]["holds"] == true && new_writes == NEW_WRITES && diverged == 0,
            "converge_ms": took.as_millis() as u64,
            "replica_start_ms": replica_start_ms,
            "terminate_ms": terminate_ms,
            "trial_ms": t_trial.elapsed().as_millis() as u64,
        }),
    )
}

/// The calibration run: a primary, a replica beside it, the primary
/// terminated and the replica promoted cleanly; the promoted replica is
/// the story's first primary, and the answer's timings its windows.
async fn calibrate(sks: Safekeepers, rng: rand::rngs::SmallRng) -> Story {
    let (first, _) = start(&spec(&sks, "first")).await;
    let (replica, _) = start(&replica_spec(&sks, "calibration-replica")).await;
    let mut story = Story {
        sks,
        running: first,
        acked: BTreeSet::new(),
        next_id: 0,
        timings: Value::Null,
        rng,
    };
    story.write().await;
    let lsn = story.terminate_primary().await;
    let reply = promote(&replica, &spec(&story.sks, "calibration"), &lsn, json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    story.timings = reply.json();
    assert_eq!(story.timings["status"], "completed", "{}", story.timings);
    let got = present(&replica).await;
    assert!(
        story.acked.is_subset(&got),
        "the calibration promote lost rows"
    );
    story.running = replica;
    story
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_node_dies_in_any_phase_of_a_promote() {
    crate::need_postgres!();
    let seed = chaos::seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let plan: Vec<Phase> = if chaos::full() {
        (0..FULL_TRIALS).flat_map(|_| PROMOTE_PHASES).collect()
    } else {
        vec![PROMOTE_PHASES[rng.random_range(0..PROMOTE_PHASES.len())]]
    };
    eprintln!(
        "promote crash cells {:?}: seed {seed} (COMPUTE_CTL_CHAOS_SEED={seed} replays them)",
        plan.iter().map(|p| p.name).collect::<Vec<_>>()
    );
    let t0 = Instant::now();
    let mut story = calibrate(Safekeepers::start().await, rng).await;
    eprintln!("calibration promote: {}", story.timings);
    for (n, phase) in plan.iter().enumerate() {
        let identity = json!({"phase": phase.name, "trial": n, "seed": seed});
        let row = chaos::trial("crash_promote", identity, async {
            Some(trial(&mut story, *phase, n).await)
        })
        .await;
        assert!(row.is_some());
    }
    let r = story.running.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    eprintln!(
        "promote crash cells: {} trials in {} ms",
        plan.len(),
        t0.elapsed().as_millis()
    );
}
