//! `POST /promote` at the router: bad input is a 400 naming each field and
//! changes nothing; a compute that is not a running replica gets a 412.
//! (The promote itself, on real Postgres: `tests/it/promote.rs`.)

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{compute, request, send, spec};
use crate::http::router;
use crate::state::ComputeStatus;

fn body(spec: Value, lsn: &str) -> Value {
    json!({ "spec": spec, "wal_flush_lsn": lsn })
}

#[tokio::test]
async fn bad_input_is_a_400_naming_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let mut replica = spec("r");
    replica["mode"] = json!("Replica");
    replica["cluster"]["roles"][0]["name"] = json!("");
    let mut b = body(replica, "12/zz");
    b["lsn_wait_timeout_ms"] = json!(0);
    let r = send(&app, request(Method::POST, "/promote", Some(&b))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let paths: Vec<String> = r.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    for path in [
        "$.wal_flush_lsn",
        "$.lsn_wait_timeout_ms",
        "$.spec.mode",
        "$.spec.cluster.roles[0].name",
    ] {
        assert!(paths.iter().any(|p| p == path), "{path} in {paths:?}");
    }
    // Not JSON, or without the LSN: 400 too.
    let missing = json!({ "spec": spec("p") });
    let r = send(&app, request(Method::POST, "/promote", Some(&missing))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.error().contains("wal_flush_lsn"), "{}", r.text);
    let r = send(&app, request(Method::POST, "/promote", None)).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert!(r.json()["error"].is_string());
    let st = c.state();
    assert_eq!((st.status, st.generation), (ComputeStatus::Empty, 0));
    assert!(st.promote.is_none());
}

#[tokio::test]
async fn a_compute_that_is_not_a_running_replica_gets_a_412() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let b = body(spec("p"), "0/16B3748");
    let r = send(&app, request(Method::POST, "/promote", Some(&b))).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(r.error().contains("status empty"), "{}", r.text);
    assert_eq!(c.state().generation, 0);
}
