//! The schema of one database as SQL, from `pg_dump --schema-only`, run as
//! the Postgres OS user and streamed as it is produced (a schema of
//! thousands of tables is never held in memory): Neon's `GET
//! /database_schema`, whose handler only calls [`schema`]. The whole dump
//! has a deadline; a dump cut short by it ends the stream with an error
//! (the client sees an incomplete body).
//!
//! Any name works: it reaches pg_dump as `PGDATABASE` (as Neon passes it),
//! never as `--dbname`, which would read a name containing `=` as a
//! connection string. Before pg_dump runs, one session checks that a
//! database of that name exists and accepts connections ([`EXISTS_SQL`]).

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::connect::{APPLICATION_NAME, connect};
use super::error::{describe_error, is_unreachable};
use crate::env::{CommandSpec, Elapsed, Env, ExitInfo, StreamingChild, StreamingDone, timeout};
use crate::params::ComputeParams;
use crate::spec::MAX_NAME_BYTES;

/// How long one dump may take in all.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bounds the check that the database exists.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size of pg_dump's output.
const CHUNK: usize = 64 * 1024;

/// Whether a database that accepts connections has this name.
pub const EXISTS_SQL: &str =
    "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1 AND datallowconn";

/// Why there is no dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// No database that accepts connections has this name (templates that
    /// refuse connections and invalid databases included).
    #[error("database {0:?} does not exist (or accepts no connections)")]
    NoSuchDatabase(String),
    /// Longer than Postgres' limit for names: no such database can exist.
    #[error(
        "no database can be named so: the name is {0} bytes, longer than Postgres' {MAX_NAME_BYTES}-byte limit for names"
    )]
    NameTooLong(usize),
    /// Postgres could not be reached for the lookup (or did not answer it
    /// in time).
    #[error("cannot look the database up: {0}; retry once Postgres is healthy")]
    Unreachable(String),
    /// Postgres refused the lookup (its message and SQLSTATE).
    #[error("Postgres refused to look the database up: {0}")]
    LookupRefused(String),
    #[error("cannot find the Postgres OS user: {0}")]
    NoPostgresUser(std::io::Error),
    #[error("cannot run pg_dump: {0}")]
    Spawn(std::io::Error),
    #[error("reading pg_dump's output failed: {0}")]
    Read(std::io::Error),
    #[error("pg_dump wrote nothing: {0}")]
    NothingWritten(Elapsed),
    #[error("pg_dump failed: {0}")]
    Wait(std::io::Error),
    /// pg_dump exited before it wrote anything (its stderr quoted).
    #[error("{command} failed ({exit}) without output: {reason}")]
    FailedWithoutOutput {
        command: String,
        exit: ExitInfo,
        reason: String,
    },
}

/// The schema of `database` as pg_dump writes it, chunk by chunk. The
/// first chunk is read before this returns, so that a pg_dump that fails at
/// once is an error with its reason rather than an empty dump; a failure
/// after it (pg_dump's exit status, the deadline) ends the stream with an
/// error.
pub async fn schema<E: Env>(
    env: &E,
    params: &ComputeParams,
    database: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<E>, DumpError> {
    if database.contains('\0') {
        return Err(DumpError::NoSuchDatabase(database.to_string()));
    }
    if database.len() > MAX_NAME_BYTES {
        return Err(DumpError::NameTooLong(database.len()));
    }
    if !exists(env, params, database).await? {
        return Err(DumpError::NoSuchDatabase(database.to_string()));
    }
    let who = env.postgres_identity().map_err(DumpError::NoPostgresUser)?;
    let conn = &params.conn;
    let cmd = CommandSpec::new(params.pg_tool("pg_dump"))
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
        .env("PGDATABASE", database)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", APPLICATION_NAME)
        .run_as(who);
    let dump = env.spawn_streaming(&cmd).map_err(DumpError::Spawn)?;
    stream(env, dump, cmd.display()).await
}

/// Whether a database of this name exists and accepts connections
/// ([`EXISTS_SQL`], one fresh session under [`LOOKUP_TIMEOUT`]).
async fn exists<E: Env>(
    env: &E,
    params: &ComputeParams,
    database: &str,
) -> Result<bool, DumpError> {
    let lookup = async {
        let client = connect(env, &params.conn, LOOKUP_TIMEOUT, LOOKUP_TIMEOUT)
            .await
            .map_err(|e| DumpError::Unreachable(e.to_string()))?;
        client
            .query_opt(EXISTS_SQL, &[&database])
            .await
            .map(|row| row.is_some())
            .map_err(|e| {
                if is_unreachable(&e) {
                    DumpError::Unreachable(describe_error(&e))
                } else {
                    DumpError::LookupRefused(describe_error(&e))
                }
            })
    };
    timeout(env, LOOKUP_TIMEOUT, lookup)
        .await
        .unwrap_or_else(|e| Err(DumpError::Unreachable(e.to_string())))
}

/// Reads the first chunk, then hands the rest over as a stream.
async fn stream<E: Env>(
    env: &E,
    dump: StreamingChild,
    command: String,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<E>, DumpError> {
    let StreamingChild { mut stdout, done } = dump;
    let first = match timeout(env, DUMP_TIMEOUT, read_chunk(&mut stdout)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(DumpError::Read(e)),
        Err(e) => return Err(DumpError::NothingWritten(e)),
    };
    if first.is_empty() {
        let (exit, stderr) = done.await.map_err(DumpError::Wait)?;
        let reason = String::from_utf8_lossy(&stderr).trim().to_string();
        return Err(DumpError::FailedWithoutOutput {
            command,
            exit,
            reason,
        });
    }
    let state = DumpState {
        stdout,
        done: Some(done),
        env: env.clone(),
        deadline: env.now() + DUMP_TIMEOUT,
        first: Some(first),
        command,
    };
    Ok(futures::stream::unfold(state, next_chunk::<E>))
}

struct DumpState<E: Env> {
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    done: Option<StreamingDone>,
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
