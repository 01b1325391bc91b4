//! `POST /configure`: deliver the first spec (from `empty`) or reconfigure
//! (from `running`), and wait for the outcome.
//!
//! - invalid spec: 400 listing every problem; nothing changes;
//! - another configure in flight: 409, unless it is the *same* operation
//!   (`operation_uuid`), in which case this request waits for it too, so a
//!   retried or duplicated request gets the outcome of the original;
//! - any state but `empty`/`running`: 412;
//! - `operation_uuid` equal to the one in effect: 200 at once, no work;
//! - otherwise 200 + status once the spec is applied, 500 + error if the
//!   compute failed, 409 if a terminate abandoned it.
//!
//! The work is done by the supervisor task; this handler only waits on the
//! watch channel, so a client that disconnects (dropping this future)
//! cannot leave the compute half-configured.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::status::StatusBody;
use crate::compute::{Compute, ComputeState, SubmitError, Submitted};
use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::json_body::SpecJson;
use crate::spec::{ComputeSpec, ValidationContext, validate};
use crate::state::ComputeStatus;

/// The request body (Neon's `ConfigurationRequest`; unknown fields are ignored).
#[derive(Debug, Deserialize)]
pub struct ConfigureRequest {
    pub spec: ComputeSpec,
}

/// The handler.
pub async fn post<E: Env>(
    State(state): State<AppState<E>>,
    SpecJson(req): SpecJson<ConfigureRequest>,
) -> Result<Json<StatusBody>, ApiError> {
    let compute = &state.compute;
    let ctx = ValidationContext {
        superuser: compute.params.conn.user.clone(),
    };
    let problems = validate(&req.spec, &ctx);
    if !problems.is_empty() {
        return Err(ApiError::invalid_spec(problems));
    }
    let operation = req.spec.operation_uuid.clone();
    match compute.submit(req.spec) {
        Ok(Submitted::Accepted(generation)) => wait(compute, generation).await,
        Ok(Submitted::AlreadyApplied) => {
            tracing::info!(?operation, "operation already applied; nothing to do");
            Ok(Json(StatusBody::from_state(&compute.state())))
        }
        Err(SubmitError::Busy(status)) => {
            let st = compute.state();
            match same_operation(&st, operation.as_deref()) {
                Some(Joined::InFlight(generation)) => {
                    tracing::info!(?operation, "same operation in flight; waiting for it");
                    wait(compute, generation).await
                }
                Some(Joined::Applied) => Ok(Json(StatusBody::from_state(&st))),
                None => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    SubmitError::Busy(status).to_string(),
                )),
            }
        }
        Err(e @ SubmitError::WrongState(_)) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            e.to_string(),
        )),
    }
}

/// How a request relates to the operation already under way.
enum Joined {
    /// The same operation is being applied as this generation.
    InFlight(u64),
    /// It finished in the meantime.
    Applied,
}

fn same_operation(st: &ComputeState, operation: Option<&str>) -> Option<Joined> {
    let operation = operation?;
    let uuid_of = |s: &Option<Arc<ComputeSpec>>| {
        s.as_deref()
            .and_then(|s| s.operation_uuid.as_deref())
            .map(str::to_string)
    };
    if st.status.is_configuring() {
        // Before the supervisor picks it up the spec is in `pending`; after, in `spec`.
        let in_flight = if st.pending.is_some() {
            uuid_of(&st.pending)
        } else {
            uuid_of(&st.spec)
        };
        (in_flight.as_deref() == Some(operation)).then_some(Joined::InFlight(st.generation))
    } else if st.status == ComputeStatus::Running {
        (uuid_of(&st.spec).as_deref() == Some(operation)).then_some(Joined::Applied)
    } else {
        None
    }
}

async fn wait<E: Env>(compute: &Compute<E>, generation: u64) -> Result<Json<StatusBody>, ApiError> {
    match compute.wait_applied(generation).await {
        Ok(st) => Ok(Json(StatusBody::from_state(&st))),
        Err(reason) => {
            let status = if compute.state().status == ComputeStatus::Failed {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                // Abandoned because a terminate came first.
                StatusCode::CONFLICT
            };
            Err(ApiError::new(status, reason))
        }
    }
}
