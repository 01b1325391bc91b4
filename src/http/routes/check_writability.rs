//! `POST /check_writability`: the control plane's write probe of a primary.
//! As Neon does, it upserts one row of a service table, `public.health_check`
//! in the `-C` database, created on first use (never at start, so a compute
//! started with `skip_pg_catalog_updates` opens no session until asked);
//! the SQL is `pg::probe::write_health_check`.
//!
//! 200 with the text `true` when the write committed (also when Postgres says
//! the disk is full: the timeline is reachable, the probe only cannot grow);
//! 412 unless the compute is `running` a primary; 500 with the reason when
//! the write fails.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::pg;
use crate::spec::ComputeMode;

/// Bounds the whole probe (connect and write).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The handler.
pub async fn post<E: Env>(State(state): State<AppState<E>>) -> Result<Response, ApiError> {
    let compute = &state.compute;
    let (status, mode) = {
        let rx = compute.subscribe();
        let st = rx.borrow();
        (st.status, st.spec.as_ref().map(|s| s.mode.clone()))
    };
    super::require_running(status, "check writability once it runs")?;
    if let Some(mode @ (ComputeMode::Replica | ComputeMode::Static(_))) = mode {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "this compute is a read-only {mode:?}; only a primary can be checked for writability"
            ),
        ));
    }
    match pg::probe::write_health_check(compute.env(), &compute.params().conn, CHECK_TIMEOUT).await
    {
        Ok(()) => Ok(text_true()),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writability check failed: {e}"),
        )),
    }
}

/// `true` as `text/plain`, the body Neon's contract documents.
fn text_true() -> Response {
    let mut resp = "true".into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
