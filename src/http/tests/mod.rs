//! Router-level tests: the real router on a `Compute<TokioEnv>` in process
//! (`tower::ServiceExt::oneshot`), no Postgres. Where a test needs the
//! supervisor loop it runs the real one with a `postgres` binary that does
//! not exist, so a first start fails at once.

mod auth;
mod configure;
mod dry_run;
mod errors;
mod promote;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::compute::{Compute, ComputeParams, ConnTarget};
use crate::env::TokioEnv;

/// The compute id the tests configure.
pub const COMPUTE_ID: &str = "compute-test-1";

/// A compute in `empty` whose Postgres can never start (the binary does not
/// exist) and whose PGDATA is inside `dir`.
pub fn compute(dir: &tempfile::TempDir) -> Arc<Compute<TokioEnv>> {
    let params = ComputeParams {
        pgdata: dir.path().join("pgdata"),
        pgbin: PathBuf::from("/nonexistent/compute_ctl-api-test/postgres"),
        conn: ConnTarget {
            host: "127.0.0.1".into(),
            // In this developer's port range and never listened on by these tests.
            port: 56_599,
            user: "cloud_admin".into(),
            dbname: "postgres".into(),
        },
        compute_id: Some(COMPUTE_ID.into()),
        ..ComputeParams::unstartable()
    };
    Compute::new(TokioEnv::new(), params)
}

/// A compute as [`compute`] gives it, its router (no auth), and the real
/// supervisor loop running on a task.
pub fn running(
    dir: &tempfile::TempDir,
) -> (
    Arc<Compute<TokioEnv>>,
    Router,
    tokio::task::JoinHandle<crate::compute::RunOutcome>,
) {
    let c = compute(dir);
    let app = crate::http::router(c.clone(), None);
    let run = tokio::spawn({
        let c = c.clone();
        async move { c.run().await }
    });
    (c, app, run)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    /// The `error` of an error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string in {}", self.text))
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Builds a request; `body` is sent as JSON when given.
pub fn request(method: Method, uri: &str, body: Option<&Value>) -> Request<Body> {
    let b = Request::builder().method(method).uri(uri);
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Sends one request through the router.
pub async fn send(router: &Router, req: Request<Body>) -> Reply {
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// A fixture spec as JSON.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A valid spec with this operation id and no catalog work.
pub fn spec(operation_uuid: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = Value::from(operation_uuid);
    s["skip_pg_catalog_updates"] = Value::from(true);
    s
}

/// `{"spec": spec}`.
pub fn configure_body(spec: Value) -> Value {
    serde_json::json!({ "spec": spec })
}

/// Polls `cond` on the compute's state until it holds or 10 s pass.
pub async fn wait_until(
    compute: &Compute<TokioEnv>,
    what: &str,
    cond: impl Fn(&crate::compute::ComputeState) -> bool,
) {
    let mut rx = compute.subscribe();
    let waited = crate::env::timeout(
        compute.env(),
        Duration::from_secs(10),
        rx.wait_for(|st| cond(st)),
    )
    .await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "timed out waiting for {what}; state is {:?}",
        compute.state().status
    );
}
