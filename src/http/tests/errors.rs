//! Error shapes, status codes of rejections, request ids, read-only routes.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use super::*;
use crate::compute::TerminateMode;
use crate::http::{MAX_BODY_BYTES, router};
use crate::state::ComputeStatus;

fn assert_json_error(r: &Reply, status: StatusCode, needle: &str) {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{status}: content-type {:?}",
        r.header("content-type")
    );
    let err = r.error();
    assert!(err.contains(needle), "{status}: {err:?} lacks {needle:?}");
    assert!(
        r.header("x-request-id").is_some(),
        "{status}: no X-Request-Id"
    );
}

#[tokio::test]
async fn every_listed_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    for (m, p) in crate::http::ROUTES {
        // Only routes that answer without a supervisor or Postgres.
        if *p == "/terminate" {
            continue;
        }
        let r = send(&app, request(m.parse().unwrap(), p, None)).await;
        assert!(
            !matches!(
                r.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{m} {p}: {}",
            r.status
        );
    }
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let r = send(&app, request(Method::GET, "/nope", None)).await;
    assert_json_error(&r, StatusCode::NOT_FOUND, "no route GET /nope");
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let r = send(&app, request(Method::GET, "/configure", None)).await;
    assert_json_error(&r, StatusCode::METHOD_NOT_ALLOWED, "allowed: POST");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = send(&app, request(Method::DELETE, "/status", None)).await;
    assert_json_error(&r, StatusCode::METHOD_NOT_ALLOWED, "DELETE");
    // Neon's routes that do not apply here: 405 too, never 501, for a method
    // Neon does not serve.
    let r = send(&app, request(Method::TRACE, "/promote", None)).await;
    assert_json_error(&r, StatusCode::METHOD_NOT_ALLOWED, "allowed: POST");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = send(&app, request(Method::PUT, "/lfc/prewarm", None)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    let allow = r.header("allow").unwrap_or_default().to_string();
    for m in ["GET", "POST", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_json_400() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let bad = |body: &'static str, ct: Option<&'static str>| {
        let mut b = Request::builder().method(Method::POST).uri("/configure");
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(body)).unwrap()
    };
    let r = send(&app, bad("{not json", Some("application/json"))).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "");
    // JSON, but not a configure request: axum would say 422; we say 400 and why.
    let r = send(
        &app,
        bad(
            r#"{"spec": {"format_version": 1.0}}"#,
            Some("application/json"),
        ),
    )
    .await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "cluster");
    // Not sent as JSON: 400 too (Neon's contract for /configure has no 415).
    let r = send(&app, bad("{}", Some("text/plain"))).await;
    assert_json_error(
        &r,
        StatusCode::BAD_REQUEST,
        "Content-Type: application/json",
    );
    let r = send(&app, bad("{}", None)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "application/json");
    assert_eq!(
        c.state().status,
        ComputeStatus::Empty,
        "a rejected body changed nothing"
    );
}

#[tokio::test]
async fn oversized_body_is_a_json_413() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let big = format!("{{\"spec\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/configure")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let r = send(&app, req).await;
    assert_json_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "");
}

#[tokio::test]
async fn invalid_spec_is_400_listing_every_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let body = configure_body(fixture("invalid_three_mistakes.json"));
    let r = send(&app, request(Method::POST, "/configure", Some(&body))).await;
    assert_json_error(
        &r,
        StatusCode::BAD_REQUEST,
        "spec is invalid (3 problem(s))",
    );
    let problems = r.json()["problems"].as_array().cloned().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for p in &problems {
        assert!(p["path"].as_str().unwrap().starts_with("$."), "{p}");
        assert!(!p["message"].as_str().unwrap().is_empty(), "{p}");
    }
    let st = c.state();
    assert_eq!((st.status, st.generation), (ComputeStatus::Empty, 0));
    assert!(st.pending.is_none());
}

#[tokio::test]
async fn configure_in_a_state_that_forbids_it_is_412() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    c.request_terminate(TerminateMode::Fast).unwrap();
    let body = configure_body(spec("op-412"));
    let r = send(&app, request(Method::POST, "/configure", Some(&body))).await;
    assert_json_error(&r, StatusCode::PRECONDITION_FAILED, "termination_pending");
    assert!(c.state().pending.is_none());
}

#[tokio::test]
async fn terminate_with_an_unknown_mode_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let r = send(&app, request(Method::POST, "/terminate?mode=slow", None)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "slow");
    assert_eq!(c.state().status, ComputeStatus::Empty);
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let req = Request::builder()
        .uri("/status")
        .header("x-request-id", "cp-42.abc")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, req).await.header("x-request-id"),
        Some("cp-42.abc")
    );
    let a = send(&app, request(Method::GET, "/status", None)).await;
    let b = send(&app, request(Method::GET, "/nope", None)).await;
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b, "generated ids are unique");
    // A junk id is replaced, not echoed.
    let req = Request::builder()
        .uri("/status")
        .header("x-request-id", "two words")
        .body(Body::empty())
        .unwrap();
    assert_ne!(
        send(&app, req).await.header("x-request-id"),
        Some("two words")
    );
}

#[tokio::test]
async fn status_reports_the_state_in_neon_shape() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let at =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_629_764_250);
    c.record_activity(at);
    let r = send(&app, request(Method::GET, "/status", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "empty");
    assert_eq!(v["last_active"], "2026-11-25T18:02:44.250Z");
    assert_eq!(v["error"], json!(null));
    assert_eq!(v["operation_uuid"], json!(null));
    assert_eq!(v["pending_restart"], json!([]));
    let start = v["start_time"].as_str().unwrap();
    assert!(start.ends_with('Z') && start.len() == 24, "{start}");
}

#[tokio::test]
async fn probes_metrics_and_metrics_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let r = send(&app, request(Method::GET, "/health", None)).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (StatusCode::OK, Some("empty"))
    );
    let r = send(&app, request(Method::GET, "/ready", None)).await;
    assert_json_error(&r, StatusCode::SERVICE_UNAVAILABLE, "empty, not running");
    let r = send(&app, request(Method::GET, "/metrics.json", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["total_startup_ms"], 0);
    assert_eq!(r.json()["last_reconfigure"], json!(null));
    // OpenMetrics when asked for (as Prometheus asks), text/plain otherwise (Neon's contract).
    let openmetrics = Request::builder()
        .uri("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .body(Body::empty())
        .unwrap();
    let r = send(&app, openmetrics).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let r = send(&app, request(Method::GET, "/metrics", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    // The requests above were counted by route pattern and code.
    assert!(
        r.text.contains(
            r#"compute_ctl_http_requests_total{route="/ready",method="GET",code="503"} 1"#
        ),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(r#"compute_ctl_status{status="empty"} 1"#),
        "{}",
        r.text
    );
    let _ = send(&app, request(Method::GET, "/no/such/thing", None)).await;
    let r = send(&app, request(Method::GET, "/metrics", None)).await;
    assert!(
        r.text
            .contains(r#"route="unmatched",method="GET",code="404"} 1"#),
        "unknown paths share one label: {}",
        r.text
    );
}

#[tokio::test]
async fn dbs_and_roles_before_postgres_runs_is_412() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(compute(&dir), None);
    let r = send(&app, request(Method::GET, "/dbs_and_roles", None)).await;
    assert_json_error(
        &r,
        StatusCode::PRECONDITION_FAILED,
        "configure the compute first",
    );
}

/// Neon's /terminate: 200 with `lsn` when it terminates the compute, 201
/// with the same body when it was already terminated; the status names how.
#[tokio::test]
async fn terminate_is_200_then_201_with_an_lsn_field() {
    let dir = tempfile::tempdir().unwrap();
    let (c, app, run) = running(&dir);
    let r = send(
        &app,
        request(Method::POST, "/terminate?mode=immediate", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let first = r.json();
    assert_eq!(first["status"], "terminated");
    assert!(first.as_object().unwrap().contains_key("lsn"), "{first}");
    let _ = run.await;
    let r = send(&app, request(Method::POST, "/terminate", None)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["lsn"], first["lsn"]);
    assert_eq!(c.state().status, ComputeStatus::Terminated);
}

/// While a terminate is under way, /status says which kind (Neon's enum).
#[tokio::test]
async fn a_pending_terminate_is_named_by_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    c.request_terminate(TerminateMode::Fast).unwrap();
    let r = send(&app, request(Method::GET, "/status", None)).await;
    assert_eq!(r.json()["status"], "termination_pending_fast");
    c.request_terminate(TerminateMode::Immediate).unwrap();
    let r = send(&app, request(Method::GET, "/status", None)).await;
    assert_eq!(r.json()["status"], "termination_pending_immediate");
    assert_eq!(r.json()["tenant"], Value::Null);
    assert!(r.json().get("tenant_id").is_none());
}
