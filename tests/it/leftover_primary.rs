//! compute_ctl killed alone on its node, on real Postgres 15. Its
//! postmaster is not tied to it (only the tools are, by PDEATHSIG), so it
//! goes on as a primary: its safekeepers stream from it and its clients'
//! commits are acknowledged. compute_ctl then starts again on the same
//! PGDATA and port, as a systemd restart does. The restart stops that
//! postmaster (first thing, before it asks the safekeepers anything:
//! ARCHITECTURE.md's invariant), and every commit the leftover
//! acknowledged, also after compute_ctl died, must be in the new primary,
//! with all three safekeepers streaming from it.
//!
//! What this does not show: the order itself. With the stop moved after
//! the sync it passed too (3 of 3 runs): the base backup, taken after the
//! stop, held the late commits. A loss needs the most advanced safekeeper
//! to miss them, which this test does not arrange.

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::durable_primary::{assert_none_lost, insert, present, spec, start, wait_all_streaming};
use crate::support::os::alive;
use crate::support::safekeepers::Safekeepers;
use crate::support::wait_for;

const WITHIN: Duration = Duration::from_secs(60);

/// The writer's bound: rows, and time.
const MAX_ROWS: i32 = 200_000;
const MAX_WRITE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_beside_a_leftover_primary_keeps_every_commit_it_acknowledged() {
    crate::need_postgres!();
    let sks = Safekeepers::start().await;
    let (mut c, _) = start(&spec(&sks, "leftover-1")).await;
    wait_all_streaming(&c).await;
    let postmaster = c.postmaster_pid().expect("a postmaster runs");

    // compute_ctl alone dies; its postmaster stays a primary.
    c.signal(nix::sys::signal::Signal::SIGKILL);
    c.wait_exit(WITHIN).await;
    assert!(alive(postmaster), "the postmaster outlives compute_ctl");

    // A client commits on the leftover until it is stopped.
    let client = c.sql("postgres", "writer").await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            for id in 0..MAX_ROWS {
                if t0.elapsed() > MAX_WRITE || !insert(&client, id).await {
                    break;
                }
                acked.lock().unwrap().insert(id);
            }
        })
    };
    wait_for(
        WITHIN,
        "the leftover primary to acknowledge 50 commits",
        || async { (acked.lock().unwrap().len() >= 50).then_some(()) },
    )
    .await;

    // The node's service manager starts compute_ctl again, same PGDATA.
    c.respawn(Some(spec(&sks, "leftover-2")));
    c.wait_status("running", WITHIN).await;
    writer
        .await
        .expect("the writer ends once its primary is stopped");
    assert!(
        !alive(postmaster),
        "the restart stopped the leftover postmaster"
    );

    let acked = acked.lock().unwrap().clone();
    assert_none_lost(
        &acked,
        &present(&c).await,
        "the restarted primary (of the leftover's)",
    );
    wait_all_streaming(&c).await;
}
