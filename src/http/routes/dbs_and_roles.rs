//! `GET /dbs_and_roles`: the roles and databases Postgres holds now.
//!
//! PLACEHOLDER until the catalog snapshot lands (branch `catalog`).

use axum::extract::State;
use axum::http::StatusCode;

use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;

/// The handler.
pub async fn get<E: Env>(State(_state): State<AppState<E>>) -> Result<(), ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not implemented yet",
    ))
}
