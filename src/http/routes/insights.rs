//! `GET /insights`: what pg_stat_statements holds now (no history), as
//! `{"pg_stat_statements": [row, ...]}`, the 100 statements with the most
//! execution time. Without the extension (not created in the `-C` database,
//! or not in `shared_preload_libraries`) the list is empty: a compute without
//! it has nothing to report, which is not an error. 412 while Postgres is not
//! running, 503 when it cannot be read.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::catalog::quote::quote_ident;
use crate::env::{Env, timeout};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::pg;

/// The first column of the first row.
fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// Bounds the whole read.
pub const INSIGHTS_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema the extension is created in (in the `-C` database), no row without it.
pub const INSTALLED_SQL: &str = "SELECT n.nspname FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'";

/// One row with the statements as a JSON array.
pub fn insights_sql(schema: &str) -> String {
    format!(
        "SELECT coalesce(json_agg(row_to_json(s)), '[]'::json)::text \
         FROM (SELECT * FROM {}.pg_stat_statements ORDER BY total_exec_time DESC LIMIT 100) s",
        quote_ident(schema)
    )
}

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
    let read = async {
        let client = pg::connect(
            &compute.env,
            &compute.params.conn,
            INSIGHTS_TIMEOUT,
            INSIGHTS_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        let schema = first_value(
            &client
                .simple_query(INSTALLED_SQL)
                .await
                .map_err(|e| e.to_string())?,
        );
        let Some(schema) = schema else {
            return Ok(Vec::new());
        };
        let rows = match client.simple_query(&insights_sql(&schema)).await {
            Ok(rows) => rows,
            Err(e) => {
                // Created but not preloaded: the view exists and refuses to be read.
                tracing::info!(error = %e, "pg_stat_statements cannot be read; reporting no insights");
                return Ok(Vec::new());
            }
        };
        match first_value(&rows) {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| format!("pg_stat_statements rows are not JSON: {e}")),
            None => Ok(Vec::new()),
        }
    };
    match timeout(&compute.env, INSIGHTS_TIMEOUT, read).await {
        Ok(Ok(rows)) => Ok(Json(Insights {
            pg_stat_statements: rows,
        })),
        Ok(Err(reason)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read insights: {reason}; retry once Postgres is healthy"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read insights: {e}; retry once Postgres is healthy"),
        )),
    }
}
