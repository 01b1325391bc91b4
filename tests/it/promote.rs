//! `POST /promote` on real Postgres 15: a Replica compute becomes the
//! primary of three safekeepers after its primary terminated, and no
//! acknowledged row is lost. One set of servers serves the whole story, to
//! keep the file's wall time small:
//!
//! 1. primary A (with the safekeepers) starts, then replica R (its base
//!    backup and upstream the first safekeeper, a standby of A); a client
//!    writes rows on A, each acknowledged by the quorum;
//! 2. refusals that change nothing: a promote of a primary (412), bad
//!    input (400), and a replay that cannot reach the LSN in time (500
//!    naming both LSNs; R goes on replaying as a replica);
//! 3. a clean `/terminate` of A (its `lsn`), then two concurrent `POST
//!    /promote` on R with that LSN: the same answer, Neon's `PromoteState`;
//! 4. R is the primary: every acknowledged row is there, the three
//!    safekeepers stream from it on a new timeline, new writes commit with
//!    the quorum and wait without it;
//! 5. a later `/configure` treats R as a primary (the catalog pass runs;
//!    a mode change is refused), a promote again is a 412 (or, with the
//!    same LSN, the same answer);
//! 6. R's `/terminate` answers the LSN a quorum flushed, and a new primary
//!    C resumes exactly there with every row.

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::durable_primary::{
    assert_none_lost, commit_waits_for_the_quorum, insert, present, spec, start, wait_all_streaming,
};
use crate::support::compute::{Compute, Reply};
use crate::support::safekeepers::Safekeepers;
use crate::support::wait_for;

const WITHIN: Duration = Duration::from_secs(60);

/// A replica of the safekeepers' data, streaming from the first one.
pub(crate) fn replica_spec(sks: &Safekeepers, op: &str) -> Value {
    let mut s = spec(sks, op);
    s["mode"] = json!("Replica");
    s
}

/// `POST /promote {spec, wal_flush_lsn, ...extra}`.
pub(crate) async fn promote(c: &Compute, spec: &Value, lsn: &str, extra: Value) -> Reply {
    let mut body = json!({ "spec": spec, "wal_flush_lsn": lsn });
    if let Value::Object(m) = extra {
        body.as_object_mut().unwrap().extend(m);
    }
    Reply::read(
        c.client
            .post(c.url("/promote"))
            .json(&body)
            .send()
            .await
            .expect("POST /promote"),
    )
    .await
}

/// How many rows R has replayed.
async fn count(c: &Compute) -> i64 {
    c.sql_value("SELECT count(*) FROM acked")
        .await
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_loses_no_acknowledged_row() {
    crate::need_postgres!();
    let t_test = Instant::now();
    let mut sks = Safekeepers::start().await;

    // 1. A, then R (its base backup from a safekeeper that already follows A).
    let (a, _) = start(&spec(&sks, "a")).await;
    let st = wait_all_streaming(&a).await;
    let (r, _) = start(&replica_spec(&sks, "r")).await;
    let tli_a = st["quorum"]["timeline"].as_u64().unwrap();
    assert_eq!(r.status().await["replication"]["mode"], "replica");
    let client = a.sql("postgres", "writer").await;
    let mut acked = BTreeSet::new();
    for id in 0..100 {
        assert!(insert(&client, id).await, "insert {id} on A");
        acked.insert(id);
    }

    // 2. Refusals. A primary: 412, JSON.
    let p = spec(&sks, "p");
    let reply = promote(&a, &p, "0/0", json!({})).await;
    assert_eq!(reply.status, 412, "{}", reply.text);
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("not replica")),
        "{}",
        reply.text
    );
    // Bad input: 400 naming each field.
    let reply = promote(&r, &p, "not-an-lsn", json!({})).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("$.wal_flush_lsn"), "{}", reply.text);
    let reply = promote(&r, &replica_spec(&sks, "r"), "0/0", json!({})).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("$.spec.mode"), "{}", reply.text);
    // Replay that cannot reach the LSN in time: the answer names both
    // LSNs, and R stays a working replica.
    let reply = promote(&r, &p, "FFFF/0", json!({ "lsn_wait_timeout_ms": 500 })).await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["status"], "failed", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("FFFF/0")
            && error.contains("replayed WAL up to")
            && error.contains("stays a replica"),
        "{error}"
    );
    let st = r.status().await;
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["replication"]["mode"], "replica", "{st}");
    assert_eq!(r.sql_value("SELECT pg_is_in_recovery()").await, "t");
    for id in 100..110 {
        assert!(insert(&client, id).await, "insert {id} on A");
        acked.insert(id);
    }
    wait_for(
        WITHIN,
        "R to replay A's rows after the failed promote",
        || async { (count(&r).await == acked.len() as i64).then_some(()) },
    )
    .await;

    // 3. A terminates cleanly; R is promoted at its LSN, twice at once.
    drop(client);
    let reply = a.terminate("fast", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let lsn = reply.json()["lsn"].as_str().expect("an lsn").to_string();
    let t0 = Instant::now();
    let (first, second) = tokio::join!(
        promote(&r, &p, &lsn, json!({})),
        promote(&r, &p, &lsn, json!({}))
    );
    let took = t0.elapsed();
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    let answer = first.json();
    assert_eq!(
        answer,
        second.json(),
        "a concurrent call gets the same answer"
    );
    assert_eq!(answer["status"], "completed", "{answer}");
    for field in [
        "lsn_wait_time_ms",
        "pg_promote_time_ms",
        "reconfigure_time_ms",
    ] {
        assert!(answer[field].is_u64(), "{field}: {answer}");
    }
    eprintln!("promote answered in {} ms: {answer}", took.as_millis());

    // 4. R is the primary, with every acknowledged row and the quorum.
    let st = wait_all_streaming(&r).await;
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["replication"]["mode"], "primary", "{st}");
    assert_eq!(st["operation_uuid"], "p", "{st}");
    assert_eq!(st["quorum"]["holds"], true, "{st}");
    let tli_r = st["quorum"]["timeline"].as_u64().unwrap();
    assert!(tli_r > tli_a, "R forks a newer timeline than A: {st}");
    assert_eq!(answer["timeline"].as_u64(), Some(tli_r), "{answer}");
    assert_none_lost(&acked, &present(&r).await, "the promoted R");
    assert_eq!(
        r.sql_value("SHOW synchronous_standby_names").await,
        format!(
            "ANY 2 (\"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\")",
            sks.members[0].port, sks.members[1].port, sks.members[2].port
        )
    );
    let client = r.sql("postgres", "writer").await;
    assert!(insert(&client, 1000).await, "a write on the promoted R");
    // Two safekeepers down: a commit waits, and is acknowledged once one is back.
    sks.kill(1);
    sks.kill(2);
    let waiting = tokio::spawn(async move { (insert(&client, 1001).await, client) });
    commit_waits_for_the_quorum(&r).await;
    assert!(!waiting.is_finished(), "no commit without a quorum");
    sks.restart(1).await;
    let (ok, _client) = tokio::time::timeout(WITHIN, waiting)
        .await
        .expect("the commit is acknowledged once a second safekeeper is back")
        .unwrap();
    assert!(ok);
    sks.restart(2).await;
    wait_all_streaming(&r).await;

    // 5. A later configure treats R as a primary; a promote again does not.
    let mut p2 = spec(&sks, "p2");
    p2["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "carol", "encrypted_password": null, "options": null}));
    let reply = r.configure(&p2, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        r.sql_value("SELECT count(*) FROM pg_roles WHERE rolname = 'carol'")
            .await,
        "1",
        "the catalog pass of a primary ran"
    );
    let mut back = replica_spec(&sks, "r");
    back["operation_uuid"] = "back".into();
    let reply = r.configure(&back, None).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("$.mode"), "{}", reply.text);
    let reply = promote(&r, &p, &lsn, json!({})).await;
    assert_eq!(
        reply.status, 200,
        "a retry of the same promote: {}",
        reply.text
    );
    assert_eq!(reply.json(), answer);
    let reply = promote(&r, &p, "0/1", json!({})).await;
    assert_eq!(reply.status, 412, "{}", reply.text);

    // 6. R's terminate answers what a quorum flushed; C resumes there.
    let reply = r.terminate("fast", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let lsn_r = reply.json()["lsn"].as_str().expect("an lsn").to_string();
    let (c, _) = start(&spec(&sks, "c")).await;
    let st = c.status().await;
    assert_eq!(st["replication"]["commit_lsn"], lsn_r.as_str(), "{st}");
    let got = present(&c).await;
    assert!(
        got.contains(&1000) && got.contains(&1001) && acked.is_subset(&got),
        "C has every acknowledged row: {got:?}"
    );
    eprintln!(
        "promote test: {} acknowledged rows on A, all present on R and C; wall time {} ms",
        acked.len(),
        t_test.elapsed().as_millis()
    );
}

/// A promote asked for an LSN below what a safekeeper on the replica's
/// timeline holds (a `/terminate` LSN read while two safekeepers of the
/// quorum were away can be that low) waits for the replica to replay that
/// WAL: acknowledged rows can be there. R follows safekeeper 1, which goes
/// down while A writes rows that 2 and 3 acknowledge; promoted at its own
/// replay LSN, R would drop them. It stays a replica and names the
/// safekeeper to follow; pointed there, the same promote completes with
/// every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_waits_for_the_wal_a_safekeeper_holds_past_its_lsn() {
    crate::need_postgres!();
    let mut sks = Safekeepers::start().await;
    let (a, _) = start(&spec(&sks, "a")).await;
    wait_all_streaming(&a).await;
    let (r, _) = start(&replica_spec(&sks, "r")).await;
    let client = a.sql("postgres", "writer").await;
    for id in 0..20 {
        assert!(insert(&client, id).await, "insert {id} on A");
    }
    wait_for(WITHIN, "R to replay the first rows", || async {
        (count(&r).await == 20).then_some(())
    })
    .await;
    let low = r.sql_value("SELECT pg_last_wal_replay_lsn()").await;

    // R's upstream goes down; 2 and 3 acknowledge 20 more rows.
    sks.kill(0);
    for id in 20..40 {
        assert!(insert(&client, id).await, "insert {id} on A");
    }
    drop(client);
    let reply = a.terminate("fast", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let p = spec(&sks, "p");
    let reply = promote(&r, &p, &low, json!({ "lsn_wait_timeout_ms": 2000 })).await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    let error = reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ahead = [1, 2].map(|i| format!("sk_127_0_0_1_{}", sks.members[i].port));
    assert!(
        error.contains("holds WAL up to")
            && error.contains("stays a replica")
            && ahead.iter().any(|n| error.contains(n.as_str())),
        "{error}"
    );
    assert_eq!(r.sql_value("SELECT pg_is_in_recovery()").await, "t");
    assert_eq!(count(&r).await, 20, "R kept replaying as a replica");

    // Pointed at safekeeper 2, the same promote completes with every row.
    let mut follow = replica_spec(&sks, "r2");
    follow["pageserver_connstring"] = sks.members[1].connstr().into();
    let reply = r.configure(&follow, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = promote(&r, &p, &low, json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "completed", "{}", reply.text);
    let got = present(&r).await;
    assert!((0..40).all(|id| got.contains(&id)), "rows: {got:?}");
}
