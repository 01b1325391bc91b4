//! `GET /database_schema?database=NAME`: the schema of one database as SQL,
//! from `pg_dump --schema-only`, run as the Postgres OS user and streamed to
//! the client as it is produced (a schema of thousands of tables is never
//! held in memory). The whole dump has a deadline; a dump cut short by it
//! ends the response early (the client sees an incomplete body).
//!
//! Any name works: it reaches pg_dump as `PGDATABASE` (as Neon passes it),
//! never as `--dbname`, which would read a name containing `=` as a
//! connection string.
//!
//! 404 for a database that does not exist (or cannot be connected to:
//! templates that refuse connections, invalid databases), and for a name
//! longer than Postgres' 63-byte limit (no such database can exist); 412
//! while Postgres is not running; 503 only when Postgres cannot be reached;
//! 500 when Postgres refuses the lookup (its message and SQLSTATE quoted) or
//! pg_dump fails before it writes anything (its stderr quoted).

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::env::{CommandSpec, Env, timeout};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiQuery};
use crate::pg;

/// How long one dump may take in all.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bounds the check that the database exists.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size of pg_dump's output.
const CHUNK: usize = 64 * 1024;

/// The query string. Without `database` no database is named, which is
/// answered as one that does not exist (Neon's contract knows 200 and 404).
#[derive(Debug, Deserialize)]
pub struct SchemaQuery {
    #[serde(default)]
    pub database: Option<String>,
}

/// Whether a database that accepts connections has this name.
const EXISTS_SQL: &str = "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1 AND datallowconn";

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
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "database {database:?} does not exist (or accepts no connections); GET /dbs_and_roles lists the databases"
            ),
        )
    };
    if database.contains('\0') {
        return Err(not_found());
    }
    if database.len() > crate::spec::MAX_NAME_BYTES {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no database can be named so: the name is {} bytes, longer than Postgres' {}-byte limit for names",
                database.len(),
                crate::spec::MAX_NAME_BYTES
            ),
        ));
    }
    let lookup = async {
        let client = pg::connect(
            compute.env(),
            &compute.params().conn,
            LOOKUP_TIMEOUT,
            LOOKUP_TIMEOUT,
        )
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        client
            .query_opt(EXISTS_SQL, &[&database])
            .await
            .map(|row| row.is_some())
            .map_err(|e| {
                let code = if pg::is_unreachable(&e) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (code, pg::describe_error(&e))
            })
    };
    match timeout(compute.env(), LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err(not_found()),
        Ok(Err((StatusCode::SERVICE_UNAVAILABLE, reason))) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot look the database up: {reason}; retry once Postgres is healthy"),
            ));
        }
        Ok(Err((code, reason))) => {
            return Err(ApiError::new(
                code,
                format!("Postgres refused to look the database up: {reason}"),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot look the database up: {e}; retry once Postgres is healthy"),
            ));
        }
    }
    let who = compute.env().postgres_identity().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot find the Postgres OS user: {e}"),
        )
    })?;
    let conn = &compute.params().conn;
    let cmd = CommandSpec::new(compute.params().pg_tool("pg_dump"))
        .args([
            "--schema-only",
            "--no-password",
            "--host",
            conn.host.as_str(),
            "--port",
            &conn.port.to_string(),
            "--username",
            conn.user.as_str(),
        ])
        // As Neon: the name goes in PGDATABASE, which libpq never parses as
        // a connection string (`--dbname` would, for a name with `=`).
        .env("PGDATABASE", database.as_str())
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", pg::APPLICATION_NAME)
        .run_as(who);
    let dump = compute.env().spawn_streaming(&cmd).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot run pg_dump: {e}"),
        )
    })?;
    stream_dump(compute.env(), dump, cmd.display()).await
}

/// Reads the first chunk before answering, so that a pg_dump that fails at
/// once is a 500 with its reason rather than an empty 200.
async fn stream_dump<E: Env>(
    env: &E,
    dump: crate::env::StreamingChild,
    command: String,
) -> Result<Response, ApiError> {
    let crate::env::StreamingChild { mut stdout, done } = dump;
    let first = timeout(env, DUMP_TIMEOUT, read_chunk(&mut stdout)).await;
    let first = match first {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading pg_dump's output failed: {e}"),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("pg_dump wrote nothing: {e}"),
            ));
        }
    };
    if first.is_empty() {
        let (exit, stderr) = done.await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("pg_dump failed: {e}"),
            )
        })?;
        let reason = String::from_utf8_lossy(&stderr).trim().to_string();
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{command} failed ({exit}) without output: {reason}"),
        ));
    }
    let deadline = env.now() + DUMP_TIMEOUT;
    let env = env.clone();
    let state = DumpState {
        stdout,
        done: Some(done),
        env,
        deadline,
        first: Some(first),
        command,
    };
    let body = futures::stream::unfold(state, next_chunk::<E>);
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

struct DumpState<E: Env> {
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    done: Option<crate::env::StreamingDone>,
    env: E,
    deadline: tokio::time::Instant,
    first: Option<Bytes>,
    command: String,
}

async fn read_chunk(r: &mut Pin<Box<dyn AsyncRead + Send>>) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(CHUNK);
    r.read_buf(&mut buf).await?;
    Ok(buf.freeze())
}

async fn next_chunk<E: Env>(
    mut s: DumpState<E>,
) -> Option<(Result<Bytes, std::io::Error>, DumpState<E>)> {
    if let Some(first) = s.first.take() {
        return Some((Ok(first), s));
    }
    let done = s.done.take()?;
    let left = s.deadline.saturating_duration_since(s.env.now());
    match timeout(&s.env, left, read_chunk(&mut s.stdout)).await {
        Ok(Ok(b)) if !b.is_empty() => {
            s.done = Some(done);
            Some((Ok(b), s))
        }
        Ok(Ok(_)) => match done.await {
            Ok((exit, _)) if exit.success() => None,
            Ok((exit, stderr)) => {
                let reason = String::from_utf8_lossy(&stderr).trim().to_string();
                tracing::error!(command = %s.command, %exit, %reason, "pg_dump failed mid-stream");
                Some((
                    Err(std::io::Error::other(format!(
                        "pg_dump failed ({exit}): {reason}"
                    ))),
                    s,
                ))
            }
            Err(e) => Some((Err(e), s)),
        },
        Ok(Err(e)) => Some((Err(e), s)),
        Err(e) => {
            tracing::error!(command = %s.command, "pg_dump exceeded its deadline; the dump is cut short");
            Some((Err(std::io::Error::other(format!("pg_dump {e}"))), s))
        }
    }
}
