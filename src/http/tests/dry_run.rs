//! `POST /configure?dry_run=true` without Postgres: on a compute that has
//! not started, the answer says a start would follow and changes nothing;
//! the skip flag makes no catalog plan; an invalid spec is answered 200
//! with its problems; a bad query string is a 400.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::*;
use crate::http::router;
use crate::state::ComputeStatus;

#[tokio::test]
async fn a_dry_run_before_the_first_start_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let mut s = spec("op-dry");
    s["skip_pg_catalog_updates"] = json!(false);
    s["cluster"]["settings"] = json!([{"name": "work_mem", "value": "64MB", "vartype": "string"}]);
    let r = send(
        &app,
        request(
            Method::POST,
            "/configure?dry_run=true",
            Some(&configure_body(s.clone())),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (v["dry_run"].as_bool(), v["valid"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(v["apply"], "start");
    assert!(
        v["catalog"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("not running"),
        "{v}"
    );
    let work_mem = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "work_mem")
        .cloned();
    assert_eq!(
        work_mem,
        Some(json!({"name": "work_mem", "old": null, "new": "64MB"}))
    );
    let st = c.state();
    assert_eq!(st.status, ComputeStatus::Empty);
    assert_eq!(
        (st.generation, st.pending.is_none(), st.spec.is_none()),
        (0, true, true)
    );
    assert!(!dir.path().join("pgdata").exists(), "no PGDATA made");

    // The skip flag: no catalog plan is even attempted.
    s["skip_pg_catalog_updates"] = json!(true);
    let v = send(
        &app,
        request(
            Method::POST,
            "/configure?dry_run=true",
            Some(&configure_body(s.clone())),
        ),
    )
    .await
    .json();
    assert_eq!(v["catalog"]["skipped"], true);
    assert!(v["catalog"]["error"].is_null(), "{v}");

    // Invalid: 200 with every problem.
    s["format_version"] = json!(2.0);
    let r = send(
        &app,
        request(
            Method::POST,
            "/configure?dry_run=true",
            Some(&configure_body(s.clone())),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["problems"][0]["path"], "$.format_version");

    let r = send(
        &app,
        request(
            Method::POST,
            "/configure?dry_run=perhaps",
            Some(&configure_body(s)),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(c.state().status, ComputeStatus::Empty);
}
