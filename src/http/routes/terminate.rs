//! `POST /terminate?mode=fast|immediate`: stop Postgres (SIGINT or SIGQUIT,
//! escalating if it lingers) and answer once the compute is `terminated`.
//! Repeating it is harmless; an `immediate` request upgrades a `fast` one.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::status::StatusBody;
use crate::compute::TerminateMode;
use crate::env::Env;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiQuery};

/// The query string; `mode` defaults to `fast`.
#[derive(Debug, Deserialize)]
pub struct TerminateQuery {
    #[serde(default)]
    pub mode: TerminateMode,
}

/// The handler.
pub async fn post<E: Env>(
    State(state): State<AppState<E>>,
    ApiQuery(q): ApiQuery<TerminateQuery>,
) -> Result<Json<StatusBody>, ApiError> {
    let compute = &state.compute;
    match compute.request_terminate(q.mode) {
        Ok(_) => tracing::info!(mode = ?q.mode, "terminate requested"),
        // Only a terminated compute refuses: that is what was asked for.
        Err(e) => tracing::info!(error = %e, "terminate: already terminated"),
    }
    let st = compute.wait_terminated().await;
    Ok(Json(StatusBody::from_state(&st)))
}
