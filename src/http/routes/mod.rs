//! The route handlers, one file per route group.

pub mod check_writability;
pub mod configure;
pub mod database_schema;
pub mod dbs_and_roles;
pub mod dry_run;
pub mod insights;
pub mod internal;
pub mod metrics;
pub mod neon;
pub mod probes;
pub mod promote;
pub mod status;
pub mod terminate;

use axum::http::StatusCode;

use super::error::ApiError;
use crate::state::ComputeStatus;

/// Neon's 412 for a route that needs running Postgres; `then` says when to
/// ask again.
pub(super) fn require_running(status: ComputeStatus, then: &str) -> Result<(), ApiError> {
    if status == ComputeStatus::Running {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        format!("invalid compute status: the compute is {status}, not running; {then}"),
    ))
}
