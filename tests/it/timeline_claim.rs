//! Timeline claims on real Postgres 15 (`storage/timeline_claim.rs`): a
//! new primary promotes onto a timeline past every one a majority of the
//! safekeepers knows, claimed on them first, so that it never takes the
//! number of a primary whose WAL only a safekeeper it cannot reach holds.
//!
//! The incident it prevents: a start promotes onto timeline 2, writes WAL
//! that reaches one safekeeper only, and dies; the next start cannot reach
//! that safekeeper, knows no timeline 2, and promotes onto 2 again; the
//! safekeeper comes back and appends the new primary's WAL after the old
//! one's. Here a claim of timeline 7 on two of three safekeepers stands in
//! for such a start that died before anything else showed it.

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use compute_ctl::storage::{CLAIM_LOOK_SQL, CLAIM_SETTING};

use crate::durable_primary::{insert, kill_everything, present, spec, start, wait_all_streaming};
use crate::support::postgres::TestPostgres;
use crate::support::safekeepers::Safekeepers;

/// What `sk` holds as the claimed timeline (empty when none), as a start
/// reads it.
async fn claim_on(sk: &TestPostgres) -> String {
    sk.value(&format!("SELECT coalesce(({CLAIM_LOOK_SQL}), '')"))
        .await
}

/// Claims `timeline` on `sk` by hand, as a start does.
async fn claim_by_hand(sk: &TestPostgres, timeline: u32) {
    let client = sk.client("postgres").await;
    for sql in [
        format!("SET {CLAIM_SETTING} = '{timeline}'"),
        format!("ALTER SYSTEM SET {CLAIM_SETTING} = '{timeline}'"),
    ] {
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn timeline_of(st: &serde_json::Value) -> u64 {
    st["quorum"]["timeline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no quorum.timeline in /status: {st}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_promotes_past_the_timeline_a_majority_holds_claimed() {
    crate::need_postgres!();
    let sks = Safekeepers::start().await;
    // A start that claimed 7 on A and B, then died before its quorum.
    claim_by_hand(&sks.members[0], 7).await;
    claim_by_hand(&sks.members[1], 7).await;

    let (c1, _) = start(&spec(&sks, "claim-1")).await;
    let st = wait_all_streaming(&c1).await;
    assert_eq!(
        timeline_of(&st),
        8,
        "the start promotes onto the timeline after the claim, and all three follow it: {st}"
    );
    for sk in &sks.members {
        assert_eq!(claim_on(sk).await, "8", "each safekeeper holds the claim");
    }
    let writer = c1.sql("postgres", "writer").await;
    for id in 0..5 {
        assert!(insert(&writer, id).await, "insert {id} is acknowledged");
    }

    // The next start goes past it, and resumes from every row.
    kill_everything(&c1);
    c1.wait_exit(std::time::Duration::from_secs(60)).await;
    let (c2, _) = start(&spec(&sks, "claim-2")).await;
    let st = wait_all_streaming(&c2).await;
    assert_eq!(timeline_of(&st), 9, "{st}");
    let rows = present(&c2).await;
    assert!((0..5).all(|id| rows.contains(&id)), "rows: {rows:?}");
}

/// A start claims its timeline on the sessions its sync kept (one backend
/// fewer per safekeeper while the base backup runs). One of them that ended
/// in between, here its backend terminated as a safekeeper restart would,
/// is replaced by a new session: the claim still lands on that safekeeper,
/// where a claim that gave up on it would stop at the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_replaces_a_sync_session_that_ended() {
    crate::need_postgres!();
    let sks = Safekeepers::start().await;
    let env = compute_ctl::env::TokioEnv::new();
    let within = std::time::Duration::from_secs(10);
    let user = crate::support::SUPERUSER;
    let synced = compute_ctl::storage::sync_for_start(&env, &sks.connstrings(), user, within)
        .await
        .expect("the sync answers");
    assert!(
        synced.sessions.iter().all(Option::is_some),
        "the sync keeps a session to each safekeeper"
    );
    let version: u32 = sks.members[0]
        .value("SHOW server_version_num")
        .await
        .parse()
        .unwrap();
    assert_eq!(
        synced.outcome.majors,
        vec![Some(version / 10_000); 3],
        "each session knows its server's major from the startup"
    );

    let app = compute_ctl::pg::APPLICATION_NAME;
    let first = &sks.members[0];
    first
        .exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
        ))
        .await;
    crate::support::wait_for(within, "the sync's backend to exit", || async {
        (first
            .value(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
            ))
            .await
            == "0")
            .then_some(())
    })
    .await;

    let timeline = compute_ctl::storage::next_timeline(&synced.outcome.known).unwrap();
    let members = compute_ctl::storage::safekeepers(&sks.connstrings(), user).unwrap();
    compute_ctl::storage::claim_timeline(
        &env,
        &members,
        &synced.outcome.known,
        timeline,
        within,
        &synced.sessions,
    )
    .await
    .expect("the claim takes a majority");
    for sk in &sks.members {
        assert_eq!(
            claim_on(sk).await,
            timeline.to_string(),
            "every safekeeper holds the claim, also the one whose kept session ended"
        );
    }
}
