//! The durable primary on real Postgres 15: a primary compute with three
//! safekeepers (streaming standbys of a bootstrap cluster that is then
//! stopped) loses no acknowledged write. One set of servers serves the
//! whole story, to keep the file's wall time small:
//!
//! 1. compute A starts (catch-up, promote, announce, quorum) and a client
//!    writes one row per transaction; the pageserver safekeeper is killed
//!    mid-stream and commits go on (2 of 3);
//! 2. compute_ctl and every Postgres of A are killed with -9, the
//!    pageserver safekeeper comes back behind;
//! 3. compute B starts on a new PGDATA and port: every acknowledged row is
//!    there and all three safekeepers stream from it, on a new timeline;
//! 4. one safekeeper down: commits go on; two down: a commit waits (and
//!    `/ready` is 503 naming the quorum), and is acknowledged once one is
//!    back; then a notify moves B to another safekeeper set under a
//!    writing client (joint quorum, no restart), and a notify with an older
//!    safekeepers_generation gets 409;
//! 5. bad input (duplicate safekeepers, an unparsable connection string,
//!    no safekeepers left) is a 400 naming the field, and nothing changes;
//! 6. a fast terminate of B answers the LSN a quorum flushed, and compute
//!    C resumes exactly there.

// Tests may use the OS clock (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use compute_ctl::storage::Lsn;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::ports::free_port;
use crate::support::postgres::TestPostgres;
use crate::support::safekeepers::Safekeepers;
use crate::support::{fixture, fixture_op, wait_for};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(60);

/// A primary with the three safekeepers, its base backup source the first.
pub(crate) fn spec(sks: &Safekeepers, op: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = op.into();
    s["pageserver_connstring"] = sks.members[0].connstr().into();
    s["safekeeper_connstrings"] = json!(sks.connstrings());
    // A standby needs max_connections at least its primary's: the test
    // safekeepers run with 40.
    for setting in s["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "max_connections" {
            setting["value"] = "40".into();
        }
    }
    s
}

/// Starts a compute with `spec` and waits until it runs; returns it with
/// the time from its spawn to `running`.
pub(crate) async fn start(spec: &Value) -> (Compute, Duration) {
    let t0 = Instant::now();
    let c = Compute::start(ComputeOpts::with_spec(spec.clone()));
    c.wait_status("running", WITHIN).await;
    (c, t0.elapsed())
}

/// Waits until `/status` shows every safekeeper streaming; returns it.
pub(crate) async fn wait_all_streaming(c: &Compute) -> Value {
    wait_for(WITHIN, "all three safekeepers to stream", || async {
        let st = c.status().await;
        let all = st["safekeepers"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|s| s["state"] == "streaming"));
        all.then_some(st)
    })
    .await
}

/// Waits until the `writer` session's commit waits for the quorum
/// (`wait_event = 'SyncRep'`).
pub(crate) async fn commit_waits_for_the_quorum(c: &Compute) {
    wait_for(WITHIN, "the commit to wait for the quorum", || async {
        let w = c
            .sql_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'writer' AND wait_event = 'SyncRep'")
            .await;
        (w == "1").then_some(())
    })
    .await;
}

/// Inserts `id` in its own transaction; true once acknowledged.
pub(crate) async fn insert(client: &tokio_postgres::Client, id: i32) -> bool {
    client
        .execute("INSERT INTO acked VALUES ($1)", &[&id])
        .await
        .is_ok()
}

/// Every id in `acked`.
pub(crate) async fn present(c: &Compute) -> BTreeSet<i32> {
    let client = c.sql("postgres", "durable-test").await;
    client
        .query("SELECT id FROM acked", &[])
        .await
        .expect("read acked")
        .iter()
        .map(|r| r.get::<_, i32>(0))
        .collect()
}

/// Every id of `acked` must be in `got` (read on `whose`): prints how many
/// were acknowledged, present and missing, then fails naming the missing.
pub(crate) fn assert_none_lost(acked: &BTreeSet<i32>, got: &BTreeSet<i32>, whose: &str) {
    let missing: Vec<_> = acked.difference(got).collect();
    eprintln!(
        "acknowledged rows: {}, present on {whose}: {}, missing: {}",
        acked.len(),
        acked.intersection(got).count(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged rows lost: {missing:?}");
}

/// Kills compute_ctl and every Postgres process of its PGDATA with -9.
pub(crate) fn kill_everything(c: &Compute) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    c.signal(Signal::SIGKILL);
    for pid in c.postgres_processes() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_and_move() {
    crate::need_postgres!();
    let mut sks = Safekeepers::start().await;
    let spec_a = spec(&sks, "a");

    // 1. Compute A: quorum from the first commit.
    let (a, took_a) = start(&spec_a).await;
    let st = wait_all_streaming(&a).await;
    assert_eq!(st["quorum"]["quorum"], "2 of 3", "{st}");
    assert_eq!(st["quorum"]["holds"], true);
    let tli_a = st["quorum"]["timeline"].as_u64().unwrap();
    assert!(tli_a >= 2, "a start promotes onto a new timeline: {st}");
    // The promotion's read of its history file (where each ancestor
    // ended, which tells a diverged safekeeper from one catching up) works
    // on this Postgres: the statement compute_ctl sends, sent here.
    let history = a
        .sql_value(&format!(
            "SELECT h FROM ({}) r(rec, t, h)",
            compute_ctl::storage::RECOVERY_AND_TIMELINE_SQL
        ))
        .await;
    let ancestors = compute_ctl::storage::parse_history(&history);
    let fork_a: Lsn = st["quorum"]["fork_lsn"].as_str().unwrap().parse().unwrap();
    assert!(
        !ancestors.is_empty()
            && ancestors
                .iter()
                .all(|(t, end)| u64::from(*t) < tli_a && *end <= fork_a),
        "timeline {tli_a}'s history file names ancestors that ended at or before its fork {fork_a}: {history:?}"
    );
    assert_eq!(
        a.sql_value("SHOW synchronous_standby_names").await,
        format!(
            "ANY 2 (\"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\")",
            sks.members[0].port, sks.members[1].port, sks.members[2].port
        )
    );
    assert_eq!(a.sql_value("SHOW synchronous_commit").await, "on");
    // The catch-up's settings are gone once it runs: the spec is the only
    // source of settings.
    assert_eq!(a.sql_value("SHOW primary_conninfo").await, "");
    assert_eq!(
        a.sql_value(
            "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'"
        )
        .await,
        "0"
    );
    let metrics = a.get("/metrics.json").await.json();
    eprintln!(
        "start to running with the safekeeper steps: {} ms (spawn to running, as the test saw it); /metrics.json: {metrics}",
        took_a.as_millis()
    );

    let client = a.sql("postgres", "writer").await;
    let mut acked = BTreeSet::new();
    for id in 0..100 {
        assert!(
            insert(&client, id).await,
            "insert {id} with all safekeepers up"
        );
        acked.insert(id);
    }
    // The pageserver safekeeper goes down mid-stream: commits go on.
    sks.kill(0);
    for id in 100..200 {
        assert!(
            insert(&client, id).await,
            "insert {id} with 2 of 3 safekeepers"
        );
        acked.insert(id);
    }

    // 2. Everything of A dies; the pageserver comes back behind.
    kill_everything(&a);
    a.wait_exit(WITHIN).await;
    drop(client);
    sks.restart(0).await;

    // 3. Compute B on a new PGDATA and port.
    let (b, took_b) = start(&spec(&sks, "b")).await;
    eprintln!("B: start to running {} ms", took_b.as_millis());
    assert_none_lost(&acked, &present(&b).await, "B, after kill -9 and a move");
    let st = wait_all_streaming(&b).await;
    let tli_b = st["quorum"]["timeline"].as_u64().unwrap();
    assert!(tli_b > tli_a, "B forks a newer timeline than A: {st}");

    // 4. One safekeeper down: commits go on. Two down: a commit waits.
    let client = b.sql("postgres", "writer").await;
    sks.kill(1);
    assert!(insert(&client, 1000).await);
    sks.kill(2);
    let waiting = tokio::spawn(async move { (insert(&client, 1001).await, client) });
    commit_waits_for_the_quorum(&b).await;
    assert!(!waiting.is_finished(), "no commit without a quorum");
    wait_for(
        WITHIN,
        "/status to say the quorum does not hold",
        || async {
            let st = b.status().await;
            (st["quorum"]["holds"] == false && st["quorum"]["streaming"] == 1).then_some(())
        },
    )
    .await;
    // Not ready while the quorum does not hold, saying why.
    let r = b.get("/ready").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.text
            .contains("safekeeper quorum does not hold: 1 of 3 safekeepers stream"),
        "{}",
        r.text
    );
    assert!(!waiting.is_finished(), "no commit without a quorum");
    sks.restart(1).await;
    let (ok, _client) = tokio::time::timeout(WITHIN, waiting)
        .await
        .expect("the commit is acknowledged once a second safekeeper is back")
        .unwrap();
    assert!(ok);
    sks.restart(2).await;
    wait_all_streaming(&b).await;
    let r = b.get("/ready").await;
    assert_eq!(r.status, 200, "ready again with the quorum: {}", r.text);

    // 4b. A notify moves B to another safekeeper set (member 2 is replaced
    // by D, a clone of member 1) while a client writes: no restart, the new
    // set's quorum in force at the answer, every acknowledged row kept.
    let pid = b.postmaster_pid();
    let d = TestPostgres::standby_of(&sks.members[1]).await;
    let old_2 = std::mem::replace(&mut sks.members[2], d);
    let writer = b.sql("postgres", "writer").await;
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut ok = BTreeSet::new();
            let mut id = 2000;
            while !stop.load(Ordering::Relaxed) && id < 12_000 {
                if insert(&writer, id).await {
                    ok.insert(id);
                }
                id += 1;
            }
            ok
        }
    });
    let mut moved = spec(&sks, "move");
    moved["safekeepers_generation"] = 2.into();
    moved["skip_pg_catalog_updates"] = true.into();
    let r = b.configure(&moved, None).await;
    stop.store(true, Ordering::Relaxed);
    let written_during = during.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let metrics = b.get("/metrics.json").await.json();
    let timings = &metrics["last_reconfigure"];
    eprintln!(
        "safekeeper move under load: {timings}; rows acknowledged during it: {}",
        written_during.len()
    );
    assert_eq!(timings["operation_uuid"], "move", "{timings}");
    assert!(
        timings["safekeeper_move_ms"].as_u64().is_some(),
        "{timings}"
    );
    acked.extend(written_during);
    assert_eq!(
        b.postmaster_pid(),
        pid,
        "a safekeeper move never restarts Postgres"
    );
    assert_eq!(
        b.sql_value("SHOW synchronous_standby_names").await,
        format!(
            "ANY 2 (\"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\", \"sk_127_0_0_1_{}\")",
            sks.members[0].port, sks.members[1].port, sks.members[2].port
        )
    );
    // At the answer a majority of the new set streams already.
    let st = b.status().await;
    assert_eq!(st["quorum"]["holds"], true, "{st}");
    drop(old_2);
    wait_all_streaming(&b).await;
    // A notify delayed behind the move (an older generation) is refused.
    let mut stale = spec(&sks, "stale");
    stale["safekeepers_generation"] = 1.into();
    stale["safekeeper_connstrings"][2] = "127.0.0.1:1".into();
    let r = b.configure(&stale, None).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("older than the 2 in effect"), "{}", r.text);
    assert_eq!(b.status().await["status"], "running");

    // 5. Bad input: 400 naming the field, nothing changed.
    let before = b.sql_value("SHOW synchronous_standby_names").await;
    let mut dup = spec(&sks, "dup");
    dup["safekeepers_generation"] = 2.into();
    dup["safekeeper_connstrings"] = json!([
        sks.connstrings()[0],
        sks.connstrings()[1],
        sks.connstrings()[0]
    ]);
    let r = b.configure(&dup, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("$.safekeeper_connstrings[2]"), "{}", r.text);
    let mut bad = spec(&sks, "bad");
    bad["safekeepers_generation"] = 2.into();
    bad["safekeeper_connstrings"][1] = "host=x port=notaport".into();
    let r = b.configure(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("$.safekeeper_connstrings[1]"), "{}", r.text);
    assert_eq!(b.sql_value("SHOW synchronous_standby_names").await, before);
    assert_eq!(b.status().await["status"], "running");
    // Removing every safekeeper would silently drop the quorum: refused.
    let mut none = spec(&sks, "none");
    none["safekeepers_generation"] = 3.into();
    none["safekeeper_connstrings"] = json!([]);
    refused_and_untouched(&b, &none, "silently drop that guarantee").await;

    // 6. Terminate answers what a quorum flushed; C resumes exactly there.
    let r = b.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Postgres has stopped once /terminate answers (compute_ctl itself
    // lingers a few seconds for the control plane: not waited for).
    let lsn = r.json()["lsn"].as_str().expect("an lsn").to_string();
    let (c, _) = start(&spec(&sks, "c")).await;
    let st = c.status().await;
    assert_eq!(st["replication"]["commit_lsn"], lsn.as_str(), "{st}");
    let got = present(&c).await;
    assert!(got.contains(&1000) && got.contains(&1001) && acked.is_subset(&got));
}

/// A `/configure` of `spec` that `c` must refuse by its safekeepers: 400
/// naming `$.safekeeper_connstrings` with `why`, the dry run reporting the
/// same problem, and Postgres untouched (same postmaster, same config,
/// same operation in effect).
async fn refused_and_untouched(c: &Compute, spec: &Value, why: &str) {
    let pid = c.postmaster_pid();
    let names = c.sql_value("SHOW synchronous_standby_names").await;
    let op = c.status().await["operation_uuid"].clone();
    let r = c.configure(spec, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("$.safekeeper_connstrings") && error.contains(why),
        "{error}"
    );
    let dry = c.dry_run(spec).await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    let problems = dry.json()["problems"].clone();
    let found = problems.as_array().is_some_and(|p| {
        p.iter().any(|p| {
            p["path"] == "$.safekeeper_connstrings"
                && p["message"].as_str().is_some_and(|m| m.contains(why))
        })
    });
    assert!(found, "the dry run reports it: {problems}");
    assert_eq!(c.postmaster_pid(), pid, "Postgres is not restarted");
    assert_eq!(c.sql_value("SHOW synchronous_standby_names").await, names);
    let st = c.status().await;
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["operation_uuid"], op, "{st}");
}

#[tokio::test]
async fn a_running_primary_becomes_durable_only_at_a_start() {
    crate::need_postgres!();
    let c = Compute::start(ComputeOpts::with_spec(fixture_op("spec.json", "plain")));
    c.wait_running().await;
    let mut durable = fixture_op("spec.json", "durable");
    durable["safekeeper_connstrings"] = json!([format!("127.0.0.1:{}", free_port())]);
    refused_and_untouched(&c, &durable, "restart this compute with the spec").await;
    assert_eq!(c.sql_value("SHOW synchronous_standby_names").await, "");
}

#[tokio::test]
async fn a_loopback_advertise_addr_with_a_remote_safekeeper_exits_2() {
    crate::need_postgres!();
    let mut s = fixture("spec.json");
    s["safekeeper_connstrings"] = json!(["10.1.2.3:5454"]);
    s["pageserver_connstring"] = "host=127.0.0.1 port=1".into();
    let c = Compute::start(ComputeOpts::with_spec(s));
    let exit = c.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(2), "{}", c.log());
    assert!(c.log().contains("--advertise-addr"), "{}", c.log());
    assert!(
        c.log().contains("$.safekeeper_connstrings[0]"),
        "{}",
        c.log()
    );
}
