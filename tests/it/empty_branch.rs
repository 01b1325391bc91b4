//! An empty branch on real Postgres 15 (`storage/empty_branch.rs`): a
//! primary promoted onto timeline N and died in its quorum wait, after the
//! safekeepers had fetched N's history file and before any of N's WAL
//! reached them. Fetching the file made N their recovery target, so they
//! can follow only a timeline whose history holds N.
//!
//! The incidents:
//! - the crash suite's `start.quorum` cell, chaos seed 1796456648: the
//!   next start forked beside N, from N's parent, onto the claimed N+1.
//!   Every safekeeper refused it ("new timeline 4 is not a child of
//!   database system timeline 2") and no quorum ever formed;
//! - this test, once it joined the branch: a safekeeper below the fork
//!   asked for N's parent, and the new primary's walsender looked for the
//!   segment where that parent ends in N's file, which no primary ever
//!   made ("requested WAL segment 000000030000000000000005 has already
//!   been removed"). It never caught up.
//!
//! Here the dead primary's history file is put into each safekeeper's
//! `pg_wal` by hand, as its walreceiver would have fetched it, while
//! nothing streams to them; safekeeper C was down for the last commits,
//! so it lags below the fork. Last, a safekeeper is cloned by
//! `pg_basebackup`, as the storage makes a new one (the crash suite's
//! move cell failed there: "requested WAL segment 00000003…05 has already
//! been removed").

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use compute_ctl::spec::Lsn;

use crate::durable_primary::{insert, kill_everything, present, spec, start, wait_all_streaming};
use crate::support::os::postgres_user;
use crate::support::postgres::TestPostgres;
use crate::support::safekeepers::Safekeepers;
use crate::support::{poll_until, wait_for};

const WITHIN: Duration = Duration::from_secs(60);

fn timeline_of(st: &serde_json::Value) -> u64 {
    st["quorum"]["timeline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no quorum.timeline in /status: {st}"))
}

/// How far `sk` has WAL (received, else replayed since its restart).
async fn received(sk: &TestPostgres) -> Lsn {
    let v = sk
        .value("SELECT COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")
        .await;
    v.parse().unwrap_or_else(|e| panic!("{v:?} is no LSN: {e}"))
}

/// Writes `content` as `pg_wal/<name>` of `sk`, owned by `postgres`, as its
/// walreceiver writes a history file it fetched.
fn put_in_pg_wal(sk: &TestPostgres, name: &str, content: &str) {
    let wal = sk.data_dir().join("pg_wal");
    let tmp = wal.join(format!("{name}.tmp"));
    std::fs::write(&tmp, content).expect("write the history file");
    let (uid, gid) = postgres_user();
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).expect("chown the history file");
    std::fs::rename(&tmp, wal.join(name)).expect("rename the history file into pg_wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_joins_the_empty_branch_a_dead_primary_left_on_the_safekeepers() {
    crate::need_postgres!();
    let mut sks = Safekeepers::start().await;

    // Compute 1 runs on timeline 2 and acknowledges rows, the last ones
    // with C down, then dies; C comes back behind, with no one to follow.
    let (c1, _) = start(&spec(&sks, "branch-1")).await;
    let st = wait_all_streaming(&c1).await;
    let parent = timeline_of(&st);
    let writer = c1.sql("postgres", "writer").await;
    for id in 0..3 {
        assert!(insert(&writer, id).await, "insert {id} is acknowledged");
    }
    sks.kill(2);
    for id in 3..5 {
        assert!(insert(&writer, id).await, "insert {id} is acknowledged");
    }
    kill_everything(&c1);
    c1.wait_exit(WITHIN).await;
    sks.restart(2).await;

    // A primary that promoted onto the next timeline at the most advanced
    // safekeeper's LSN (a start's catch-up target), and died once the
    // safekeepers had its history file: each takes it as its target.
    let mut at = Lsn(0);
    for sk in &sks.members {
        at = at.max(received(sk).await);
    }
    assert!(
        received(&sks.members[2]).await < at,
        "C lags below the fork"
    );
    let parent_history = std::fs::read_to_string(
        sks.members[0]
            .data_dir()
            .join("pg_wal")
            .join(format!("{parent:08X}.history")),
    )
    .expect("the safekeepers hold compute 1's history file");
    let branch = parent + 1;
    let content = format!("{parent_history}\n{parent}\t{at}\tno recovery target specified\n");
    for sk in &sks.members {
        put_in_pg_wal(sk, &format!("{branch:08X}.history"), &content);
    }
    for sk in &sks.members {
        wait_for(
            WITHIN,
            "each safekeeper to take the dead primary's timeline as its target",
            || async {
                sk.log()
                    .contains(&format!("new target timeline is {branch}"))
                    .then_some(())
            },
        )
        .await;
    }

    // Compute 2 joins that branch, promotes past it onto the timeline it
    // claims, and all three safekeepers follow it with every row.
    let (c2, _) = start(&spec(&sks, "branch-2")).await;
    let all = poll_until(WITHIN, || async {
        let st = c2.status().await;
        let all = st["safekeepers"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|s| s["state"] == "streaming"));
        all.then_some(st)
    })
    .await;
    let Some(st) = all else {
        let logs: Vec<String> = sks.members.iter().map(TestPostgres::log).collect();
        panic!(
            "not all three safekeepers stream from compute 2: {}\n{}",
            c2.status().await,
            logs.join("\n-----\n")
        );
    };
    assert_eq!(
        timeline_of(&st),
        branch + 1,
        "compute 2 forks from the empty branch {branch} onto the next number: {st}"
    );
    // Each safekeeper's restartpoint, where a base backup of it starts, is
    // on compute 2's timeline: past the empty one, which none holds a file of.
    for (i, sk) in sks.members.iter().enumerate() {
        assert_eq!(
            sk.value("SELECT timeline_id FROM pg_control_checkpoint()")
                .await,
            (branch + 1).to_string(),
            "safekeeper {i}'s restartpoint"
        );
    }
    let history = std::fs::read_to_string(
        sks.members[0]
            .data_dir()
            .join("pg_wal")
            .join(format!("{:08X}.history", branch + 1)),
    )
    .expect("the safekeepers hold compute 2's history file");
    assert!(
        history
            .lines()
            .any(|l| l.starts_with(&format!("{branch}\t{at}\t"))),
        "compute 2's timeline forks from the branch at {at}: {history}"
    );
    let writer = c2.sql("postgres", "writer").await;
    for id in 5..10 {
        assert!(insert(&writer, id).await, "insert {id} is acknowledged");
    }
    let rows = present(&c2).await;
    assert!((0..10).all(|id| rows.contains(&id)), "rows: {rows:?}");
    // The storage can still clone a safekeeper: a base backup of one
    // starts on compute 2's timeline, past the empty one.
    let clone = TestPostgres::standby_of(&sks.members[1]).await;
    drop(clone);
    for (i, sk) in sks.members.iter().enumerate() {
        assert!(
            !sk.log().contains("is not a child"),
            "safekeeper {i} refused compute 2's timeline:\n{}",
            sk.log()
        );
    }
}
