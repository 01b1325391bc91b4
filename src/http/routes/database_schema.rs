//! `GET /database_schema?database=NAME`: the schema of one database as SQL,
//! streamed to the client as pg_dump produces it. The lookup and pg_dump
//! itself are `pg::dump::schema`; this handler checks the status, calls it
//! and turns the outcome into an answer.
//!
//! 404 for a database that does not exist (or cannot be connected to:
//! templates that refuse connections, invalid databases), and for a name
//! longer than Postgres' 63-byte limit (no such database can exist); 412
//! while Postgres is not running; 503 only when Postgres cannot be reached;
//! 500 when Postgres refuses the lookup (its message and SQLSTATE quoted) or
//! pg_dump fails before it writes anything (its stderr quoted). A dump cut
//! short after its first bytes (pg_dump failing, or its deadline
//! `pg::dump::DUMP_TIMEOUT`) ends the response early.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::env::Env;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiQuery};
use crate::pg::dump::{self, DumpError};

/// The query string. Without `database` no database is named, which is
/// answered as one that does not exist (Neon's contract knows 200 and 404).
#[derive(Debug, Deserialize)]
pub struct SchemaQuery {
    #[serde(default)]
    pub database: Option<String>,
}

/// The handler.
pub async fn get<E: Env>(
    State(state): State<AppState<E>>,
    ApiQuery(q): ApiQuery<SchemaQuery>,
) -> Result<Response, ApiError> {
    let compute = &state.compute;
    let status = compute.subscribe().borrow().status;
    super::require_running(status, "ask again once it runs")?;
    let Some(database) = q.database.filter(|d| !d.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no database named; pass ?database=NAME (GET /dbs_and_roles lists the databases)",
        ));
    };
    let body = dump::schema(compute.env(), compute.params(), &database)
        .await
        .map_err(|e| {
            let code = match e {
                DumpError::NoSuchDatabase(_) => {
                    return ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("{e}; GET /dbs_and_roles lists the databases"),
                    );
                }
                DumpError::NameTooLong(_) => StatusCode::NOT_FOUND,
                DumpError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(code, e.to_string())
        })?;
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
