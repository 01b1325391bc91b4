//! `POST /promote` (Neon's route): a Replica compute becomes the primary of
//! the request's spec once its replay reaches `wal_flush_lsn` (the old
//! primary's `/terminate` `lsn`). The work is the supervisor's
//! (`compute/promote.rs`); this handler validates, submits and waits on the
//! watch channel, so a client that disconnects does not stop the promote,
//! and a second call with the same `wal_flush_lsn` gets the same answer.
//!
//! - body `{spec, wal_flush_lsn}` (Neon's `ComputeSchemaWithLsn`; ours adds
//!   the optional `lsn_wait_timeout_ms`, default 30 s): malformed, an
//!   unparsable LSN, or a spec that is invalid or not a `Primary`: 400 with
//!   every problem; nothing changes;
//! - a primary or static compute, or one not `running`: 412; another
//!   operation in flight (or a promote to another LSN): 409;
//! - 200 with Neon's `PromoteState` `{"status": "completed", ...timings}`;
//!   a failed promote: 500 `{"status": "failed", "error": ...}`, which says
//!   whether the compute stayed a replica.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::compute::{PromoteOutcome, PromoteRefused, PromoteTicket, PromoteTimings};
use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::json_body::SpecJson;
use crate::spec::{
    ComputeMode, ComputeSpec, Lsn, SpecProblem, ValidationContext, validate, validate_advertise,
};

/// How long replay may take to reach `wal_flush_lsn` unless the request says.
pub const DEFAULT_LSN_WAIT: Duration = Duration::from_secs(30);
/// The longest `lsn_wait_timeout_ms` accepted.
pub const MAX_LSN_WAIT: Duration = Duration::from_secs(600);

/// The request body (Neon's `ComputeSchemaWithLsn`; unknown fields ignored).
#[derive(Debug, Deserialize)]
pub struct PromoteRequest {
    /// The spec of the primary this compute becomes (`mode: Primary`).
    pub spec: ComputeSpec,
    /// The old primary's last WAL position (its `/terminate` `lsn`).
    pub wal_flush_lsn: String,
    /// Ours: how long replay may take to reach `wal_flush_lsn`.
    #[serde(default)]
    pub lsn_wait_timeout_ms: Option<u64>,
}

/// Neon's `PromoteState`.
#[derive(Debug, Serialize)]
pub struct PromoteState<'a> {
    /// `completed` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(flatten)]
    pub timings: Option<PromoteTimings>,
}

/// The handler.
pub async fn post<E: Env>(
    State(state): State<AppState<E>>,
    SpecJson(req): SpecJson<PromoteRequest>,
) -> Response {
    let compute = &state.compute;
    let mut problems = Vec::new();
    let lsn = match req.wal_flush_lsn.parse::<Lsn>() {
        Ok(l) => Some(l),
        Err(e) => {
            problems.push(problem("$.wal_flush_lsn", e.to_string()));
            None
        }
    };
    let wait = match req.lsn_wait_timeout_ms.map(Duration::from_millis) {
        None => DEFAULT_LSN_WAIT,
        Some(w) if !w.is_zero() && w <= MAX_LSN_WAIT => w,
        Some(_) => {
            problems.push(problem(
                "$.lsn_wait_timeout_ms",
                format!(
                    "must be between 1 and {} (milliseconds)",
                    MAX_LSN_WAIT.as_millis()
                ),
            ));
            DEFAULT_LSN_WAIT
        }
    };
    if req.spec.mode != ComputeMode::Primary {
        problems.push(problem(
            "$.spec.mode",
            "the spec of a promote is the primary this replica becomes: mode must be Primary",
        ));
    }
    let ctx = ValidationContext {
        superuser: compute.params().conn.user.clone(),
    };
    let mut spec_problems = validate(&req.spec, &ctx);
    spec_problems.extend(validate_advertise(
        &req.spec,
        &compute.params().advertised(),
    ));
    let refused = compute.setting_problems(&req.spec, &spec_problems).await;
    spec_problems.extend(refused);
    problems.extend(spec_problems.into_iter().map(|p| SpecProblem {
        path: format!("$.spec{}", p.path.strip_prefix('$').unwrap_or(&p.path)),
        message: p.message,
    }));
    let Some(lsn) = lsn.filter(|_| problems.is_empty()) else {
        return ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "the promote request is invalid ({} problem(s)): {}; nothing was changed, fix it and send it again",
                problems.len(),
                SpecProblem::join(&problems)
            ),
            problems,
        }
        .into_response();
    };
    let ticket = match compute.submit_promote(req.spec, lsn, wait) {
        Ok(t) => t,
        Err(e) => {
            let status = match e {
                PromoteRefused::NotReplica(_) | PromoteRefused::WrongState(_) => {
                    StatusCode::PRECONDITION_FAILED
                }
                PromoteRefused::Busy(_) | PromoteRefused::OtherPromote(_) => StatusCode::CONFLICT,
            };
            return ApiError::new(status, e.to_string()).into_response();
        }
    };
    let outcome = match ticket {
        PromoteTicket::Done(o) => o,
        PromoteTicket::Wait(generation) => compute.wait_promoted(generation).await,
    };
    answer(&outcome)
}

fn problem(path: &str, message: impl Into<String>) -> SpecProblem {
    SpecProblem {
        path: path.to_string(),
        message: message.into(),
    }
}

/// 200 `completed` with the timings, or 500 `failed` with the reason.
fn answer(outcome: &PromoteOutcome) -> Response {
    match outcome {
        PromoteOutcome::Completed(t) => Json(PromoteState {
            status: "completed",
            error: None,
            timings: Some(*t),
        })
        .into_response(),
        PromoteOutcome::Failed(e) => {
            tracing::error!(error = %e, "promote failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(PromoteState {
                    status: "failed",
                    error: Some(e),
                    timings: None,
                }),
            )
                .into_response()
        }
    }
}
