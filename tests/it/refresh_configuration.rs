//! `POST /refresh_configuration` on the internal listener, and the
//! replica's own refresh after `--refresh-after-secs` without streaming, on
//! the real binary and real Postgres, with the fake control plane changing
//! the spec it serves: a pulled spec that moves storage is applied as a
//! notify (reload, same postmaster, no catalog work), an unchanged one
//! applies nothing and the next pull waits out the backoff, and without a
//! control plane the route answers 412.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::compute::{Compute, ComputeOpts};
use crate::support::control_plane::{FakeControlPlane, Reply};
use crate::support::postgres::TestPostgres;
use crate::support::{fixture, md5_hex, wait_for};

const WITHIN: Duration = Duration::from_secs(30);

/// A compute of `cp` with the internal listener on a port of its own.
fn opts(cp: &FakeControlPlane, internal: u16, extra: &[&str]) -> ComputeOpts {
    let mut o = ComputeOpts::without_spec().args([
        "--control-plane-uri",
        &cp.uri(),
        "--compute-id",
        "compute-refresh",
        "--internal-http-port",
        &internal.to_string(),
    ]);
    o.args.extend(extra.iter().map(|a| a.to_string()));
    o
}

/// Neon's envelope around `spec`.
fn attached(spec: &Value) -> Reply {
    Reply::Json(json!({"status": "attached", "spec": spec}))
}

/// `POST /refresh_configuration` on the internal listener: status and body.
async fn refresh(c: &Compute, internal: u16) -> (u16, String) {
    let r = c
        .client
        .post(format!("http://127.0.0.1:{internal}/refresh_configuration"))
        .send()
        .await
        .expect("POST /refresh_configuration");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Waits until `/status` shows `op` applied and the compute running.
async fn wait_operation(c: &Compute, op: &str) {
    c.wait_until(&format!("{op} to be applied"), WITHIN, async |c| {
        let st = c.status().await;
        st["operation_uuid"] == op && st["status"] == "running"
    })
    .await;
}

async fn value(c: &Compute, sql: &str) -> String {
    c.sql_value(sql).await
}

#[tokio::test]
async fn without_a_control_plane_or_a_spec_it_answers_412() {
    // No control plane: nothing to pull from.
    let internal = support::ports::free_port();
    let c = Compute::serving(
        ComputeOpts::without_spec().args(["--internal-http-port", &internal.to_string()]),
    )
    .await;
    let (status, body) = refresh(&c, internal).await;
    assert_eq!(status, 412, "{body}");
    let err: Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("--control-plane-uri")),
        "{body}"
    );

    // A control plane that has no spec for it yet: the compute is empty.
    let cp = FakeControlPlane::start(
        vec![],
        Reply::Json(json!({"status": "empty", "spec": null})),
    )
    .await;
    let internal = support::ports::free_port();
    let c = Compute::serving(opts(&cp, internal, &[])).await;
    let (status, body) = refresh(&c, internal).await;
    assert_eq!(status, 412, "{body}");
    assert!(body.contains("no spec yet"), "{body}");
}

#[tokio::test]
async fn a_primary_applies_moved_storage_as_a_notify_and_nothing_when_unchanged() {
    crate::need_postgres!();
    let mut v1 = fixture("spec.json");
    v1["operation_uuid"] = "op-1".into();
    v1["cluster"]["roles"][0]["encrypted_password"] = md5_hex("first", "alice").into();
    let cp = FakeControlPlane::start(vec![], attached(&v1)).await;
    let internal = support::ports::free_port();
    let c = Compute::start(opts(&cp, internal, &[]));
    c.wait_running().await;
    let pid = c.postmaster_pid().expect("a postmaster");
    let alice = "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'";
    let first_pw = format!("md5{}", md5_hex("first", "alice"));
    assert_eq!(value(&c, alice).await, first_pw);
    let loaded = value(&c, "SELECT pg_conf_load_time()::text").await;

    // The control plane moves storage (and changes a password, which a
    // refresh must not apply: it does no catalog work).
    let storage = "host=127.0.0.1 port=1 user=cloud_admin dbname=postgres";
    let mut v2 = v1.clone();
    v2["operation_uuid"] = "op-2".into();
    v2["pageserver_connstring"] = storage.into();
    v2["cluster"]["roles"][0]["encrypted_password"] = md5_hex("second", "alice").into();
    cp.set_reply(attached(&v2));
    let before = cp.requests();
    let (status, body) = refresh(&c, internal).await;
    assert_eq!((status, body.as_str()), (200, ""), "Neon's answer");
    c.wait_until("the moved storage to be loaded", WITHIN, async |c| {
        value(
            c,
            "SELECT coalesce(current_setting('neon.pageserver_connstring', true), '')",
        )
        .await
            == storage
    })
    .await;
    assert!(cp.requests() > before);
    // Postgres sees the new value at the SIGHUP; the supervisor's check
    // after it ends the reconfigure.
    wait_operation(&c, "op-2").await;
    assert_eq!(
        c.postmaster_pid(),
        Some(pid),
        "a refresh never restarts Postgres"
    );
    assert_eq!(value(&c, alice).await, first_pw, "no catalog work");
    let last = c.get("/metrics.json").await.json()["last_reconfigure"].clone();
    assert_eq!(last["catalog_statements"], 0, "{last}");
    assert_eq!(last["skip_pg_catalog_updates"], true, "{last}");
    assert_eq!(c.status().await["status"], "running");
    let reloaded = value(&c, "SELECT pg_conf_load_time()::text").await;
    assert_ne!(reloaded, loaded, "applied by a reload");

    // Storage unchanged (another setting changed): nothing is applied.
    let mut v3 = v2.clone();
    v3["operation_uuid"] = "op-3".into();
    v3["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "work_mem", "value": "12MB", "vartype": "string"}));
    cp.set_reply(attached(&v3));
    let before = cp.requests();
    assert_eq!(refresh(&c, internal).await.0, 200);
    c.wait_log("storage unchanged in the control plane's spec", WITHIN)
        .await;
    let first_pull = Instant::now();
    assert_eq!(cp.requests(), before + 1);
    assert_eq!(
        value(&c, "SELECT pg_conf_load_time()::text").await,
        reloaded,
        "no reload"
    );
    assert_ne!(value(&c, "SHOW work_mem").await, "12MB");

    // Asked again at once: the pull waits out the 5 s backoff.
    assert_eq!(refresh(&c, internal).await.0, 200);
    wait_for(WITHIN, "the next pull", || async {
        (cp.requests() > before + 1).then_some(())
    })
    .await;
    let waited = first_pull.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "the second pull came {waited:?} after the first, inside the 5 s backoff"
    );
    assert_eq!(c.postmaster_pid(), Some(pid));
}

/// The quick-start spec of a replica streaming from `source`.
fn replica(source: &TestPostgres, op: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = op.into();
    s["mode"] = json!("Replica");
    s["pageserver_connstring"] = source.connstr().into();
    s
}

/// Waits until the WAL receiver streams from `port`.
async fn wait_streaming_from(c: &Compute, port: u16) {
    let want = format!("streaming {port}");
    c.wait_until(
        &format!("the WAL receiver to stream from port {port}"),
        WITHIN,
        async |c| match c.connect().await {
            Ok(client) => {
                support::query_value(
                    &client,
                    "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver",
                )
                .await
                .as_deref()
                    == Some(want.as_str())
            }
            Err(_) => false,
        },
    )
    .await;
}

#[tokio::test]
async fn a_replica_moves_on_a_call_and_by_itself_when_its_source_is_gone() {
    crate::need_postgres!();
    let a = TestPostgres::storage().await;
    let b = TestPostgres::standby_of(&a).await;
    let cp = FakeControlPlane::start(vec![], attached(&replica(&a, "op-a"))).await;
    let internal = support::ports::free_port();
    let c = Compute::start(opts(&cp, internal, &["--refresh-after-secs", "2"]));
    c.wait_running().await;
    wait_streaming_from(&c, a.port).await;
    let pid = c.postmaster_pid().expect("a postmaster");

    // The control plane moved the replica to B, and the notify was lost:
    // the call pulls and applies it.
    cp.set_reply(attached(&replica(&b, "op-b")));
    assert_eq!(refresh(&c, internal).await.0, 200);
    wait_streaming_from(&c, b.port).await;
    wait_operation(&c, "op-b").await;
    assert_eq!(
        c.postmaster_pid(),
        Some(pid),
        "a move never restarts Postgres"
    );
    let b_conn = b.connstr();
    c.wait_until("/status to name B as the upstream", WITHIN, async |c| {
        c.status().await["replication"]["upstream"] == b_conn.as_str()
    })
    .await;

    // Back to A in the control plane, and B goes away: no call this time;
    // the replica notices it has not streamed for 2 s and pulls by itself.
    cp.set_reply(attached(&replica(&a, "op-back")));
    let pulls = cp.requests();
    drop(b);
    wait_streaming_from(&c, a.port).await;
    wait_operation(&c, "op-back").await;
    c.wait_log("has not streamed for --refresh-after-secs", WITHIN)
        .await;
    assert!(cp.requests() > pulls);
    assert_eq!(
        c.postmaster_pid(),
        Some(pid),
        "a move never restarts Postgres"
    );
    assert_eq!(c.status().await["status"], "running");
    let last = c.get("/metrics.json").await.json()["last_reconfigure"].clone();
    assert_eq!(last["catalog_statements"], 0, "{last}");
}

#[tokio::test]
async fn a_refresh_pull_is_one_request_whatever_the_answer() {
    use compute_ctl::env::TokioEnv;
    use compute_ctl::spec::ValidationContext;
    use compute_ctl::spec_source::{Answer, SpecFetchError, SpecSource, fetch_once};
    let pull = async |reply: Reply| {
        let cp = FakeControlPlane::start(vec![], reply).await;
        let source = SpecSource::new(&cp.uri(), "compute-refresh").unwrap();
        let got = fetch_once(
            &TokioEnv::new(),
            &source,
            &ValidationContext::default(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(cp.requests(), 1, "one request, no retry, no polling");
        got
    };
    assert!(matches!(
        pull(attached(&fixture("spec_minimal.json"))).await,
        Ok(Answer::Spec(_))
    ));
    assert!(matches!(
        pull(Reply::Json(json!({"status": "empty", "spec": null}))).await,
        Ok(Answer::NotYet)
    ));
    assert!(matches!(
        pull(Reply::Status(503, "busy")).await,
        Err(SpecFetchError::Unanswered { .. })
    ));
    assert!(matches!(
        pull(Reply::Status(403, "not yours")).await,
        Err(SpecFetchError::Rejected { status: 403, .. })
    ));
}
