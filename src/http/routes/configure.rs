//! `POST /configure`: deliver the first spec (from `empty`) or reconfigure
//! (from `running`), and wait for the outcome.
//!
//! - invalid spec, or a `mode` change on a running compute, or a running
//!   primary gaining its first safekeepers or losing all of them: 400
//!   listing every problem; nothing changes;
//! - another configure in flight: 409, unless it is the *same* operation
//!   (`operation_uuid`), in which case this request waits for it too, so a
//!   retried or duplicated request gets the outcome of the original;
//! - any state but `empty`/`running` (or `failed` with Postgres still
//!   running, after a failed reconfigure: a new spec may repair it): 412;
//! - `operation_uuid` equal to the one in effect: 200 at once, no work;
//! - a `safekeepers_generation` older than the one in effect, or a
//!   safekeeper set change without a higher one: 409, nothing changes;
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
use crate::http::error::{ApiError, ApiQuery};
use crate::http::json_body::SpecJson;
use crate::spec::{
    ComputeSpec, SpecProblem, ValidationContext, validate, validate_advertise, validate_change,
};
use crate::state::ComputeStatus;

/// The request body (Neon's `ConfigurationRequest`; unknown fields are ignored).
#[derive(Debug, Deserialize)]
pub struct ConfigureRequest {
    pub spec: ComputeSpec,
    /// Neon's `compute_ctl_config`: its `jwks` replaces the key set of auth.
    #[serde(default)]
    pub compute_ctl_config: Option<ComputeCtlConfig>,
}

/// What a Neon control plane tells compute_ctl itself (beside the spec).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ComputeCtlConfig {
    /// A JSON Web Key Set; its keys verify the API's bearer tokens from now on.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
}

impl ComputeCtlConfig {
    /// The key set, if it holds any keys (Neon sends `{"keys": []}` when it has none).
    pub fn jwks(&self) -> Option<&serde_json::Value> {
        self.jwks
            .as_ref()
            .filter(|j| j["keys"].as_array().is_some_and(|k| !k.is_empty()))
    }
}

/// The handler. `?dry_run=true` only shows what the configure would do
/// (see [`super::dry_run`]).
pub async fn post<E: Env>(
    State(state): State<AppState<E>>,
    ApiQuery(query): ApiQuery<super::dry_run::ConfigureQuery>,
    SpecJson(req): SpecJson<ConfigureRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if query.dry_run {
        return super::dry_run::respond(&state, &req.spec).await;
    }
    apply(state, req).await.into_response()
}

/// What is wrong with `spec` for this compute, before anything is read
/// from Postgres (the dry run reports the same): the spec's own problems,
/// its safekeepers against the advertised address, and what the running
/// compute cannot take by a reload (a `mode` change, a primary gaining its
/// first safekeepers or losing all of them).
pub(super) fn spec_problems<E: Env>(compute: &Compute<E>, spec: &ComputeSpec) -> Vec<SpecProblem> {
    let ctx = ValidationContext {
        superuser: compute.params().conn.user.clone(),
    };
    let mut problems = validate(spec, &ctx);
    problems.extend(validate_advertise(spec, &compute.params().advertised()));
    let current = compute.state();
    if let Some(running) = current.spec.as_deref().filter(|_| current.postgres_started) {
        problems.extend(validate_change(running, spec));
    }
    problems
}

async fn apply<E: Env>(
    state: AppState<E>,
    req: ConfigureRequest,
) -> Result<Json<StatusBody>, ApiError> {
    let compute = &state.compute;
    let mut problems = spec_problems(compute, &req.spec);
    let refused = compute.setting_problems(&req.spec, &problems).await;
    problems.extend(refused);
    if !problems.is_empty() {
        return Err(ApiError::invalid_spec(problems));
    }
    if let Some(jwks) = req.compute_ctl_config.as_ref().and_then(|c| c.jwks()) {
        // Before the spec is accepted: a bad key set changes nothing.
        state
            .auth
            .set_jwks(jwks, compute.params().compute_id.clone())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "compute_ctl_config.jwks cannot be used: {e}; nothing was changed"
                ))
            })?;
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
        Err(e @ SubmitError::StaleSafekeepers(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
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
