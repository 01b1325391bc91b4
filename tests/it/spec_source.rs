//! Fetching the spec from a control plane through the production Env: a
//! small axum server that fails first, answers "no spec yet", refuses, or
//! never recovers.
#![allow(clippy::disallowed_methods)]

use crate::support;

use std::time::{Duration, Instant};

use crate::support::control_plane::{FakeControlPlane, Reply};
use crate::support::fixture;
use compute_ctl::env::TokioEnv;
use compute_ctl::spec::ValidationContext;
use compute_ctl::spec_source::{FetchPolicy, SpecFetchError, SpecSource, fetch_spec};
use serde_json::json;

fn fast_policy() -> FetchPolicy {
    FetchPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(80),
        give_up_after: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(20),
    }
}

async fn fetch(
    cp: &FakeControlPlane,
    policy: &FetchPolicy,
) -> Result<compute_ctl::spec::ComputeSpec, SpecFetchError> {
    let source = SpecSource::new(&cp.uri(), "compute-1").unwrap();
    fetch_spec(
        &TokioEnv::new(),
        &source,
        &ValidationContext::default(),
        policy,
    )
    .await
}

#[tokio::test]
async fn retries_until_the_control_plane_answers_with_a_spec() {
    let spec = fixture("spec.json");
    let cp = FakeControlPlane::start(
        vec![
            Reply::Status(500, "boom"),
            Reply::Status(503, "unavailable"),
            Reply::Status(404, "unknown compute"),
        ],
        Reply::Json(json!({"status": "attached", "spec": spec})),
    )
    .await;
    let got = fetch(&cp, &fast_policy())
        .await
        .expect("spec after 3 failures");
    assert_eq!(
        got.operation_uuid.as_deref(),
        Some("5f1c1c3e-0000-4000-8000-000000000001")
    );
    assert_eq!(cp.requests(), 4);
    assert_eq!(cp.ids(), vec!["compute-1"; 4]);
}

#[tokio::test]
async fn a_bare_spec_is_accepted_too() {
    let cp = FakeControlPlane::start(vec![], Reply::Json(fixture("spec_minimal.json"))).await;
    let got = fetch(&cp, &fast_policy()).await.expect("bare spec");
    assert!(got.cluster.roles.is_empty());
    assert_eq!(cp.requests(), 1);
}

#[tokio::test]
async fn a_null_spec_means_keep_polling_beyond_the_failure_budget() {
    // Ten "not yet" answers take longer than the whole failure budget: polling
    // while the control plane answers is not a failure.
    let mut policy = fast_policy();
    policy.give_up_after = Duration::from_millis(50);
    policy.poll_interval = Duration::from_millis(15);
    let not_yet = Reply::Json(json!({"status": "empty", "spec": null}));
    let cp = FakeControlPlane::start(
        vec![not_yet; 10],
        Reply::Json(json!({"spec": fixture("spec.json")})),
    )
    .await;
    fetch(&cp, &policy).await.expect("spec after polling");
    assert_eq!(cp.requests(), 11);
}

#[tokio::test]
async fn gives_up_within_the_bound_naming_the_last_error() {
    let mut policy = fast_policy();
    policy.give_up_after = Duration::from_millis(500);
    let cp = FakeControlPlane::start(vec![], Reply::Status(503, "still starting")).await;
    let t0 = Instant::now();
    let err = fetch(&cp, &policy).await.expect_err("never succeeds");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "gave up late: {took:?}");
    let msg = err.to_string();
    assert!(matches!(err, SpecFetchError::GaveUp { .. }), "{msg}");
    assert!(msg.contains("HTTP 503: still starting"), "{msg}");
    assert!(msg.contains(&cp.uri()), "{msg}");
    // Backoff: far fewer requests than a busy loop would make in 500 ms.
    assert!(
        cp.requests() >= 3 && cp.requests() <= 30,
        "{} requests",
        cp.requests()
    );
}

#[tokio::test]
async fn an_unreachable_control_plane_gives_up_too() {
    let mut policy = fast_policy();
    policy.give_up_after = Duration::from_millis(300);
    let port = support::ports::free_port(); // free, nobody listens
    let source = SpecSource::new(&format!("http://127.0.0.1:{port}"), "c").unwrap();
    let err = fetch_spec(
        &TokioEnv::new(),
        &source,
        &ValidationContext::default(),
        &policy,
    )
    .await
    .expect_err("nobody listens");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let cp = FakeControlPlane::start(vec![], Reply::Status(403, "wrong compute")).await;
    let err = fetch(&cp, &fast_policy()).await.expect_err("forbidden");
    assert!(
        matches!(err, SpecFetchError::Rejected { status: 403, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong compute"));
    assert_eq!(cp.requests(), 1);
}

#[tokio::test]
async fn an_invalid_spec_is_not_retried() {
    let bad = json!({"spec": {"format_version": 2.0, "cluster": {"roles": [{"name": ""}]}}});
    let cp = FakeControlPlane::start(vec![], Reply::Json(bad)).await;
    let err = fetch(&cp, &fast_policy()).await.expect_err("invalid");
    assert!(matches!(err, SpecFetchError::BadSpec { .. }), "{err}");
    assert_eq!(cp.requests(), 1);
}
