//! A fork on real Postgres 15: a safekeeper left with WAL past a later
//! fork point. Compute 1 runs with safekeepers A, B and C; A and B go down
//! and a large transaction's WAL reaches only C (its commit waits for the
//! quorum and is never acknowledged); everything of compute 1 is killed
//! with -9 and C goes down; A and B come back and compute 2 forks at their
//! LSN, below C's, onto a newer timeline, and acknowledges rows. Then:
//!
//! - C comes back: Postgres on C refuses compute 2's history, compute_ctl
//!   neither restarts, rewinds nor re-clones it (C keeps its old history),
//!   and the quorum goes on with A and B;
//! - compute 3 starts with A, B and C reachable: the catch-up source is
//!   ranked by the newest timeline first, so every row compute 2
//!   acknowledged is there (ranked by LSN alone, C would win and they
//!   would be lost), and the unacknowledged transaction is not.

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::Duration;

use compute_ctl::spec::Lsn;
use serde_json::Value;

use crate::durable_primary::{
    assert_none_lost, commit_waits_for_the_quorum, insert, kill_everything, present, spec, start,
    wait_all_streaming,
};
use crate::support::compute::Compute;
use crate::support::postgres::TestPostgres;
use crate::support::safekeepers::Safekeepers;
use crate::support::wait_for;

const WITHIN: Duration = Duration::from_secs(60);
/// The unacknowledged transaction's ids (a few MB of WAL).
const UNACKED: std::ops::Range<i32> = 1_000_000..1_060_000;

fn lsn(v: &str) -> Lsn {
    v.parse().unwrap_or_else(|e| panic!("{v:?} is no LSN: {e}"))
}

/// The `/status.safekeepers` entry of `sk`.
fn member<'a>(st: &'a Value, sk: &TestPostgres) -> &'a Value {
    let name = format!("sk_127_0_0_1_{}", sk.port);
    st["safekeepers"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("no safekeeper {name} in /status: {st}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safekeeper_past_a_later_fork_never_wins_the_catch_up() {
    crate::need_postgres!();
    let mut sks = Safekeepers::start().await;

    // 1. Compute 1 with A, B, C; A and B go down; a large transaction's
    // WAL reaches C alone and its commit waits for the quorum.
    let (c1, _) = start(&spec(&sks, "fork-1")).await;
    wait_all_streaming(&c1).await;
    sks.kill(0);
    sks.kill(1);
    let writer = c1.sql("postgres", "writer").await;
    let big = tokio::spawn(async move {
        let sql = format!(
            "INSERT INTO acked SELECT g FROM generate_series({}, {}) g",
            UNACKED.start,
            UNACKED.end - 1
        );
        let ok = writer.execute(sql.as_str(), &[]).await.is_ok();
        (ok, writer)
    });
    commit_waits_for_the_quorum(&c1).await;
    let end = c1.sql_value("SELECT pg_current_wal_flush_lsn()").await;
    let c = &sks.members[2];
    wait_for(
        WITHIN,
        "C to receive and replay the unacknowledged transaction",
        || async {
            let q = format!("SELECT pg_last_wal_replay_lsn() >= '{end}'");
            (c.value(&q).await == "t").then_some(())
        },
    )
    .await;
    assert!(!big.is_finished(), "no commit without a quorum");

    // 2. Everything of compute 1 dies, then C; A and B come back.
    kill_everything(&c1);
    c1.wait_exit(WITHIN).await;
    let (acknowledged, _) = big.await.unwrap();
    assert!(
        !acknowledged,
        "the large transaction was never acknowledged"
    );
    let c_lsn = lsn(&c.value("SELECT pg_last_wal_replay_lsn()").await);
    sks.kill(2);
    sks.restart(0).await;
    sks.restart(1).await;

    // 3. Compute 2 forks at A and B's LSN, below C's, on a newer timeline.
    let (c2, _) = start(&spec(&sks, "fork-2")).await;
    let st = c2.status().await;
    let tli2 = st["quorum"]["timeline"].as_u64().expect("timeline");
    let fork2 = lsn(st["quorum"]["fork_lsn"].as_str().expect("fork_lsn"));
    assert!(
        fork2 < c_lsn,
        "compute 2 forks ({fork2}) below C's WAL ({c_lsn}): {st}"
    );
    let writer = c2.sql("postgres", "writer").await;
    let mut acked = BTreeSet::new();
    for id in 0..50 {
        assert!(insert(&writer, id).await, "insert {id} with A and B");
        acked.insert(id);
    }
    assert!(
        !present(&c2).await.contains(&UNACKED.start),
        "the unacknowledged transaction is not in compute 2's history"
    );

    // 4. C comes back with WAL past the fork: Postgres on C refuses
    // compute 2's history, /status calls C `diverged` (what the storage
    // re-clones by), and the quorum goes on with A and B. C's WAL receiver
    // reconnects every 200 ms, so its WAL sender here comes and goes (in
    // `startup`, even `streaming` for a moment); the watcher asks C
    // itself whenever its sender does not stream, so the state does not
    // follow the sender's flicker.
    sks.restart(2).await;
    let c = &sks.members[2];
    let c_started = c.value("SELECT pg_postmaster_start_time()").await;
    wait_for(
        WITHIN,
        "C's Postgres to refuse compute 2's history",
        || async {
            let log = c.log();
            (log.contains("is not in this server's history")
                || log.contains("forked off current database system timeline"))
            .then_some(())
        },
    )
    .await;
    let diverged = wait_for(WITHIN, "/status to call C diverged", || async {
        let st = c2.status().await;
        let m = member(&st, c).clone();
        (m["state"] == "diverged").then_some(m)
    })
    .await;
    let reason = diverged["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("past where it left this compute's history"),
        "C is diverged for its WAL past the fork: {diverged}"
    );
    let mut states = Vec::new();
    for id in 50..100 {
        if id % 10 == 0 {
            let st = c2.status().await;
            states.push(member(&st, c)["state"].to_string());
        }
        assert!(insert(&writer, id).await, "insert {id} with C diverged");
        acked.insert(id);
    }
    eprintln!("C's state in /status while compute 2 committed: {states:?}");
    // C is neither restarted, rewound nor re-cloned.
    assert_eq!(
        c.value("SELECT pg_postmaster_start_time()").await,
        c_started,
        "C is never restarted"
    );
    assert_eq!(c.value("SELECT pg_is_in_recovery()").await, "t");
    assert!(
        lsn(&c.value("SELECT pg_last_wal_replay_lsn()").await) >= c_lsn,
        "C is never rewound"
    );
    let c_tli: u64 = c
        .value("SELECT timeline_id FROM pg_control_checkpoint()")
        .await
        .parse()
        .unwrap();
    assert!(c_tli < tli2, "C stays on its old timeline {c_tli}");
    assert_eq!(
        c.value(&format!(
            "SELECT count(*) FROM acked WHERE id >= {}",
            UNACKED.start
        ))
        .await,
        (UNACKED.end - UNACKED.start).to_string(),
        "C keeps its old history"
    );

    // 5. Compute 3 with A, B and C reachable: the newest timeline wins,
    // every row compute 2 acknowledged is there, the other history is not.
    kill_everything(&c2);
    c2.wait_exit(WITHIN).await;
    drop(writer);
    let (c3, _) = start(&spec(&sks, "fork-3")).await;
    let got = present(&c3).await;
    assert_none_lost(&acked, &got, "compute 3 (of compute 2's)");
    assert!(
        !got.contains(&UNACKED.start),
        "compute 3 follows the newest timeline, not C's"
    );
    let st = c3.status().await;
    assert!(
        st["quorum"]["timeline"].as_u64().unwrap() > tli2,
        "compute 3 forks a newer timeline: {st}"
    );
    check_streaming_pair(&c3, &sks).await;
}

/// A and B stream from `c`, so its quorum holds.
async fn check_streaming_pair(c: &Compute, sks: &Safekeepers) {
    wait_for(WITHIN, "A and B to stream", || async {
        let st = c.status().await;
        let both = sks.members[..2]
            .iter()
            .all(|m| member(&st, m)["state"] == "streaming");
        (both && st["quorum"]["holds"] == true).then_some(())
    })
    .await;
}
