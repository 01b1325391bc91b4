//! Neon's probes and the Neon routes that do not apply here.
//!
//! - `GET /hadron_liveness_probe`: 200 `"ok"` when Postgres accepts a
//!   session, 500 with the reason when it does not (as Neon's, it is meant
//!   for a container's liveness probe, so it fails before the first spec).
//! - `/lfc/prewarm`, `/lfc/offload` and `/autoscaling_metrics`: Neon's
//!   local file cache and its metrics belong to Neon's storage extension,
//!   which vanilla Postgres does not have: 501 with a JSON error on the
//!   methods Neon serves (405 with `Allow` on others), never a bare 404.
//!   (`/promote` is served: `promote.rs`.)

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};

use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::pg;

/// Bounds the liveness probe.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /hadron_liveness_probe` (`pg::probe::accepts_session`).
pub async fn liveness<E: Env>(
    State(state): State<AppState<E>>,
) -> Result<Json<&'static str>, ApiError> {
    let compute = &state.compute;
    pg::probe::accepts_session(compute.env(), &compute.params().conn, LIVENESS_TIMEOUT)
        .await
        .map(|()| Json("ok"))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("liveness probe failed: {e}"),
            )
        })
}

/// Every Neon route that is not applicable to vanilla Postgres.
pub async fn not_applicable(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{method} {} is Neon-specific (the local file cache or its metrics, of Neon's storage extension) and not applicable to vanilla Postgres; see README, \"Neon's routes\"",
            uri.path()
        ),
    )
}
