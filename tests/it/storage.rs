//! Storage that really moves, on real Postgres 15: two storage clusters
//! (the second a streaming standby of the first), replica and static
//! computes that follow them, the safekeepers' commit LSN before the base
//! backup, and bad storage input.

use crate::support;

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::fixture;
use crate::support::ports::free_port;
use crate::support::postgres::TestPostgres;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(30);

/// The quick-start spec in `mode`, with its storage at `source`.
fn spec(mode: Value, source: &str, op: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = op.into();
    s["mode"] = mode;
    s["pageserver_connstring"] = source.into();
    s
}

/// A notify: the same spec with its storage moved to `source`.
fn moved(spec: &Value, source: &str, op: &str) -> Value {
    let mut s = spec.clone();
    s["operation_uuid"] = op.into();
    s["skip_pg_catalog_updates"] = true.into();
    s["pageserver_connstring"] = source.into();
    s
}

/// Waits until the compute's SQL `sql` returns `want`.
async fn wait_value(c: &Compute, what: &str, sql: &str, want: &str) {
    c.wait_until(what, WITHIN, async |c| match c.connect().await {
        Ok(client) => support::query_value(&client, sql).await.as_deref() == Some(want),
        Err(_) => false,
    })
    .await;
}

/// Waits until the WAL receiver streams from `port`.
async fn wait_streaming_from(c: &Compute, port: u16) {
    wait_value(
        c,
        &format!("the WAL receiver to stream from port {port}"),
        "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver",
        &format!("streaming {port}"),
    )
    .await;
}

/// Waits until `/status` shows `check` true of its `replication` object.
async fn wait_replication(c: &Compute, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    support::wait_for(WITHIN, what, || async {
        let r = c.status().await["replication"].clone();
        check(&r).then_some(r)
    })
    .await
}

#[tokio::test]
async fn a_replica_follows_its_storage_across_a_move_and_a_failover_without_restart() {
    let a = TestPostgres::storage().await;
    a.exec(
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'before start')",
    )
    .await;
    let b = TestPostgres::standby_of(&a).await;
    let start = spec(json!("Replica"), &a.connstr(), "op-start");
    let c = Compute::start(
        ComputeOpts::with_spec(start.clone()).args(["--compute-id", "compute-replica-1"]),
    );
    let client = c.wait_running().await;
    assert_eq!(
        support::query_value(&client, "SELECT pg_is_in_recovery()")
            .await
            .as_deref(),
        Some("t")
    );
    assert_eq!(
        support::query_value(&client, "SELECT note FROM t WHERE id = 1")
            .await
            .as_deref(),
        Some("before start")
    );
    // A replica never writes its catalog: the spec's roles are not on A, and that is fine.
    assert_eq!(
        support::query_value(
            &client,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'alice'"
        )
        .await
        .as_deref(),
        Some("0")
    );
    wait_streaming_from(&c, a.port).await;
    // The upstream names this compute.
    assert_eq!(
        a.value("SELECT application_name FROM pg_stat_replication WHERE application_name LIKE 'compute%'").await,
        "compute-replica-1"
    );
    let pid = c.postmaster_pid().expect("a postmaster");
    a.exec("INSERT INTO t VALUES (2, 'streamed from A')").await;
    wait_value(
        &c,
        "row 2",
        "SELECT note FROM t WHERE id = 2",
        "streamed from A",
    )
    .await;
    let repl = wait_replication(&c, "streaming in /status", |r| r["streaming"] == true).await;
    assert_eq!(repl["mode"], "replica");
    assert_eq!(repl["sender"], format!("127.0.0.1:{}", a.port));

    // The move: B's connection string, the skip flag; one reload, no restart.
    let notify = moved(&start, &b.connstr(), "op-move");
    let r = c.configure(&notify, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_streaming_from(&c, b.port).await;
    a.exec("INSERT INTO t VALUES (3, 'written on A after the move')")
        .await;
    wait_value(
        &c,
        "row 3 through B",
        "SELECT note FROM t WHERE id = 3",
        "written on A after the move",
    )
    .await;
    assert_eq!(
        c.postmaster_pid(),
        Some(pid),
        "a move must not restart Postgres"
    );
    let repl = wait_replication(&c, "/status to show B", |r| {
        r["streaming"] == true && r["sender"] == format!("127.0.0.1:{}", b.port)
    })
    .await;
    assert_eq!(repl["upstream"], b.connstr());
    assert!(
        repl["replay_lsn"].as_str().is_some() && repl["receive_lsn"].as_str().is_some(),
        "{repl}"
    );
    // Without --max-ready-lag the source is not asked: no lag against it.
    assert!(
        repl["replay_lag_bytes"].is_null() && repl["source_lsn"].is_null(),
        "{repl}"
    );
    let last = c.get("/metrics.json").await.json()["last_reconfigure"].clone();
    assert_eq!(last["catalog_statements"], 0, "{last}");

    // Failover: A is gone, B is promoted onto a new timeline, writes go to B.
    drop(a);
    b.promote().await;
    b.exec("INSERT INTO t VALUES (4, 'written on B after the failover')")
        .await;
    wait_value(
        &c,
        "row 4 after the failover",
        "SELECT note FROM t WHERE id = 4",
        "written on B after the failover",
    )
    .await;
    wait_value(
        &c,
        "timeline 2",
        "SELECT received_tli FROM pg_stat_wal_receiver",
        "2",
    )
    .await;
    assert_eq!(
        c.postmaster_pid(),
        Some(pid),
        "a failover must not restart Postgres"
    );
    assert_eq!(c.status().await["status"], "running");
}

#[tokio::test]
async fn a_replica_keeps_serving_reads_when_its_new_upstream_is_unreachable() {
    let a = TestPostgres::storage().await;
    a.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let start = spec(json!("Replica"), &a.connstr(), "op-start");
    let c = Compute::start(ComputeOpts::with_spec(start.clone()));
    c.wait_running().await;
    wait_streaming_from(&c, a.port).await;
    let pid = c.postmaster_pid().expect("a postmaster");

    // A mode change is a restart, not a reload: 400 with the path, nothing changes.
    let mut primary = start.clone();
    primary["mode"] = json!("Primary");
    primary["operation_uuid"] = "op-mode".into();
    let r = c.configure(&primary, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["problems"][0]["path"], "$.mode", "{}", r.text);
    // A replica without a source: 400 with the path.
    let mut sourceless = start.clone();
    sourceless["pageserver_connstring"] = Value::Null;
    sourceless["operation_uuid"] = "op-sourceless".into();
    let r = c.configure(&sourceless, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["problems"][0]["path"],
        "$.pageserver_connstring",
        "{}",
        r.text
    );
    assert_eq!(c.status().await["operation_uuid"], "op-start");

    // A move to a storage that nobody answers for.
    let nowhere = format!("host=127.0.0.1 port={} user=cloud_admin", free_port());
    let r = c
        .configure(&moved(&start, &nowhere, "op-nowhere"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let repl = wait_replication(&c, "the reason it does not stream", |r| {
        r["streaming"] == false
            && r["not_streaming_reason"]
                .as_str()
                .is_some_and(|s| s.contains("cannot be asked"))
    })
    .await;
    assert_eq!(repl["upstream"], nowhere, "{repl}");
    let client = c.connect().await.expect("Postgres still serves");
    assert_eq!(
        support::query_value(&client, "SELECT count(*) FROM t")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(c.status().await["status"], "running");

    // Back to A: it streams again, rows arrive, same postmaster.
    let r = c
        .configure(&moved(&start, &a.connstr(), "op-back"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_streaming_from(&c, a.port).await;
    a.exec("INSERT INTO t VALUES (2)").await;
    wait_value(&c, "row 2", "SELECT count(*) FROM t", "2").await;
    assert_eq!(c.postmaster_pid(), Some(pid));
}

#[tokio::test]
async fn the_base_backup_waits_until_the_storage_reaches_the_commit_lsn() {
    let a = TestPostgres::storage().await;
    a.exec("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .await;
    let b = TestPostgres::standby_of(&a).await;
    // B stops replaying; A commits a row that B has not applied.
    b.exec("SELECT pg_wal_replay_pause()").await;
    a.exec("INSERT INTO t VALUES (1, 'committed before the start')")
        .await;
    let commit = a.wal_lsn().await;
    // Safekeepers: A under two names (a majority at A's flush LSN) and a
    // dead one. A replica: a primary with safekeepers catches up from them
    // itself (tests/durable_primary.rs).
    let dead = format!("127.0.0.1:{}", free_port());
    let mut s = spec(json!("Replica"), &b.connstr(), "op-start");
    s["safekeeper_connstrings"] = json!([a.connstr(), format!("localhost:{}", a.port), dead]);
    let c = Compute::start(ComputeOpts::with_spec(s));
    c.wait_log("waiting for the storage to reach the commit LSN", WITHIN)
        .await;
    assert_ne!(c.status().await["status"], "running");
    b.exec("SELECT pg_wal_replay_resume()").await;
    let client = c.wait_running().await;
    assert_eq!(
        support::query_value(&client, "SELECT note FROM t WHERE id = 1")
            .await
            .as_deref(),
        Some("committed before the start")
    );
    let repl = c.status().await["replication"].clone();
    assert_eq!(repl["mode"], "replica", "{repl}");
    let got: u64 = lsn(repl["commit_lsn"].as_str().expect("commit_lsn"));
    assert!(
        got >= lsn(&commit),
        "commit LSN {repl} is below A's flush {commit}"
    );
    let m = c.get("/metrics.json").await.json();
    assert!(m["basebackup_bytes"].as_u64().unwrap() > 1_000_000, "{m}");
    assert!(
        m["sync_safekeepers_ms"].is_u64() && m["basebackup_ms"].as_u64().unwrap() > 0,
        "{m}"
    );
}

#[tokio::test]
async fn without_a_safekeeper_quorum_the_start_fails_with_every_answer() {
    let a = TestPostgres::storage().await;
    let dead = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let mut s = spec(json!("Primary"), &a.connstr(), "op-start");
    s["safekeeper_connstrings"] = json!([a.connstr(), dead[0], dead[1]]);
    let c = Compute::start(ComputeOpts::with_spec(s));
    let exit = c.wait_exit(WITHIN).await;
    assert!(!exit.success());
    let log = c.log();
    assert!(
        log.contains("1 of 3 answered") && log.contains("majority of 2"),
        "{log}"
    );
    for d in &dead {
        assert!(log.contains(&format!("cannot reach {d}")), "{d}: {log}");
    }
    assert!(c.postmaster_pid().is_none());
}

#[tokio::test]
async fn a_static_compute_stops_at_its_lsn_and_stays_read_only() {
    let a = TestPostgres::storage().await;
    a.exec("CREATE TABLE t (id int PRIMARY KEY, pad text)")
        .await;
    // An LSN 2 MB into the next WAL segment, past where the compute's base
    // backup ends (it switches to a new segment): the compute follows A up
    // to it and pauses there.
    let target = (((lsn(&a.wal_lsn().await) >> 24) + 1) << 24) + 2 * 1024 * 1024;
    let target_text = format!("{:X}/{:X}", target >> 32, target & 0xFFFF_FFFF);
    let s = spec(json!({"Static": target_text}), &a.connstr(), "op-start");
    let c = Compute::start(ComputeOpts::with_spec(s));
    c.wait_running().await;
    // Write past the target, then one more row that the compute must not see.
    let mut id = 0;
    while lsn(&a.wal_lsn().await) <= target + 64 * 1024 {
        a.exec(&format!(
            "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series({}, {}) g",
            id + 1,
            id + 2000
        ))
        .await;
        id += 2000;
        assert!(id < 200_000, "A's WAL does not advance");
    }
    a.exec("INSERT INTO t VALUES (-1, 'after the static LSN')")
        .await;
    let repl = wait_replication(&c, "replay paused at the static LSN", |r| {
        r["paused"] == true
    })
    .await;
    assert_eq!(repl["mode"], "static");
    assert_eq!(repl["static_lsn"], target_text);
    assert!(
        lsn(repl["replay_lsn"].as_str().unwrap()) >= target,
        "{repl}"
    );
    let client = c.connect().await.unwrap();
    assert_eq!(
        support::query_value(&client, "SELECT count(*) FROM t WHERE id = -1")
            .await
            .as_deref(),
        Some("0")
    );
    let err = client
        .batch_execute("INSERT INTO t VALUES (-2, 'no')")
        .await
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| err.to_string());
    assert!(msg.contains("read-only"), "{msg}");
}

#[tokio::test]
async fn a_static_lsn_before_the_base_backup_fails_the_start_and_says_why() {
    let a = TestPostgres::storage().await;
    let s = spec(json!({"Static": "0/1000000"}), &a.connstr(), "op-start");
    let c = Compute::start(ComputeOpts::with_spec(s));
    let exit = c.wait_exit(WITHIN).await;
    assert!(!exit.success());
    let log = c.log();
    assert!(
        log.contains("static LSN 0/1000000 is not after the end of the base backup"),
        "{log}"
    );
}

/// An `X/Y` LSN as a number.
fn lsn(s: &str) -> u64 {
    let (hi, lo) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {s}"));
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}
