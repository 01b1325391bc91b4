//! `POST /terminate?mode=fast|immediate`: stop Postgres (SIGINT or SIGQUIT,
//! escalating if it lingers) and answer once the compute is `terminated`.
//!
//! As Neon: 200 with `{"lsn": ...}` (the last WAL position, see
//! `pg::shutdown_checkpoint_lsn`; null after an immediate stop), or 201
//! with the same body when the compute was already terminated. We add the
//! status fields of `/status`. Unlike Neon, a terminate is accepted in every
//! state (a configure in flight is abandoned), and an `immediate` request
//! upgrades a `fast` one under way.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::status::StatusBody;
use crate::compute::TerminateMode;
use crate::env::Env;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiQuery};
use crate::state::ComputeStatus;

/// The query string; `mode` defaults to `fast`.
#[derive(Debug, Deserialize)]
pub struct TerminateQuery {
    #[serde(default)]
    pub mode: TerminateMode,
}

/// The answer: Neon's `TerminateResponse` plus the status.
#[derive(Debug, Serialize)]
pub struct TerminateBody {
    pub lsn: Option<String>,
    #[serde(flatten)]
    pub status: StatusBody,
}

/// The handler.
pub async fn post<E: Env>(
    State(state): State<AppState<E>>,
    ApiQuery(q): ApiQuery<TerminateQuery>,
) -> Result<(StatusCode, Json<TerminateBody>), ApiError> {
    let compute = &state.compute;
    let code = match compute.request_terminate(q.mode) {
        Ok(_) => {
            tracing::info!(mode = ?q.mode, "terminate requested");
            StatusCode::OK
        }
        // Only a terminated compute refuses: that is what was asked for.
        Err(e) => {
            tracing::info!(error = %e, "terminate: already terminated");
            StatusCode::CREATED
        }
    };
    let st = compute.wait_terminated().await;
    debug_assert_eq!(st.status, ComputeStatus::Terminated);
    Ok((
        code,
        Json(TerminateBody {
            lsn: st.terminate_lsn.clone(),
            status: StatusBody::from_state(&st),
        }),
    ))
}
