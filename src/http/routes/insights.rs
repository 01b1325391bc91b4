//! `GET /insights`: what pg_stat_statements holds now (no history), as
//! `{"pg_stat_statements": [row, ...]}`, the 100 statements with the most
//! execution time. Without the extension (not created in the `-C` database,
//! or not in `shared_preload_libraries`) the list is empty: a compute without
//! it has nothing to report, which is not an error. 412 while Postgres is not
//! running, 503 when it cannot be read. The SQL is
//! `pg::probe::statement_insights`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::pg;

/// Bounds the whole read.
pub const INSIGHTS_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer (Neon's `ComputeInsights`).
#[derive(Debug, Serialize)]
pub struct Insights {
    pub pg_stat_statements: Vec<serde_json::Value>,
}

/// The handler.
pub async fn get<E: Env>(State(state): State<AppState<E>>) -> Result<Json<Insights>, ApiError> {
    let compute = &state.compute;
    let status = compute.subscribe().borrow().status;
    super::require_running(status, "ask again once it runs")?;
    match pg::probe::statement_insights(compute.env(), &compute.params().conn, INSIGHTS_TIMEOUT)
        .await
    {
        Ok(rows) => Ok(Json(Insights {
            pg_stat_statements: rows,
        })),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read insights: {e}; retry once Postgres is healthy"),
        )),
    }
}
