//! The short SQL probes the HTTP API answers with, each in one fresh
//! supervisor session under one deadline: liveness (a session is taken,
//! nothing asked), readiness (`SELECT 1`), the control plane's write probe,
//! and the pg_stat_statements read. The handlers only call these and turn
//! the outcome into a status code.

use std::time::Duration;

use super::connect::connect;
use crate::env::{Elapsed, Env, timeout};
use crate::params::ConnTarget;

/// Creates the write probe's table when missing and moves its one row's
/// timestamp (Neon's `public.health_check`, in the `-C` database).
pub const CHECK_SQL: &str = "CREATE TABLE IF NOT EXISTS public.health_check \
     (id integer PRIMARY KEY, updated_at timestamptz DEFAULT now()); \
     INSERT INTO public.health_check VALUES (1, now()) \
     ON CONFLICT (id) DO UPDATE SET updated_at = now()";

/// The schema pg_stat_statements is created in (in the `-C` database),
/// quoted by Postgres itself; no row without the extension.
pub const INSIGHTS_INSTALLED_SQL: &str = "SELECT quote_ident(n.nspname) \
     FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'";

/// One row: the 100 statements with the most execution time as a JSON
/// array; `schema` is the quoted name [`INSIGHTS_INSTALLED_SQL`] gives.
pub fn insights_sql(schema: &str) -> String {
    format!(
        "SELECT coalesce(json_agg(row_to_json(s)), '[]'::json)::text \
         FROM (SELECT * FROM {schema}.pg_stat_statements ORDER BY total_exec_time DESC LIMIT 100) s"
    )
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Connect(#[from] super::ConnectError),
    /// The session was not taken within the probe's deadline.
    #[error("connecting to Postgres {0}")]
    ConnectTimeout(Elapsed),
    #[error("Postgres refused it: {0}")]
    Refused(String),
    #[error("Postgres answered something unreadable: {0}")]
    Unreadable(String),
    #[error("Postgres gave no answer within {0:?}; it or its storage is stuck")]
    Timeout(Duration),
}

/// Postgres' own message, SQLSTATE and detail when there are some.
fn pg_error_text(e: &tokio_postgres::Error) -> String {
    super::describe_error(e)
}

/// Runs `work` on a fresh session, connect included, within `within`.
async fn within_deadline<E, T, F, Fut>(
    env: &E,
    conn: &ConnTarget,
    within: Duration,
    work: F,
) -> Result<T, ProbeError>
where
    E: Env,
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: Future<Output = Result<T, ProbeError>>,
{
    let probe = async {
        let client = connect(env, conn, within, within).await?;
        work(client).await
    };
    timeout(env, within, probe)
        .await
        .unwrap_or(Err(ProbeError::Timeout(within)))
}

/// Liveness (Neon's `/hadron_liveness_probe`): Postgres takes a session
/// within `within`; nothing is asked on it, and it is closed at once.
pub async fn accepts_session<E: Env>(
    env: &E,
    conn: &ConnTarget,
    within: Duration,
) -> Result<(), ProbeError> {
    match timeout(env, within, connect(env, conn, within, within)).await {
        Ok(Ok(_client)) => Ok(()),
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        Err(e) => Err(ProbeError::ConnectTimeout(e)),
    }
}

/// Readiness: Postgres takes a session and answers `SELECT 1`.
pub async fn ready<E: Env>(env: &E, conn: &ConnTarget, within: Duration) -> Result<(), ProbeError> {
    within_deadline(env, conn, within, |client| async move {
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| ProbeError::Refused(format!("SELECT 1: {}", pg_error_text(&e))))
    })
    .await
}

/// The write probe ([`CHECK_SQL`]). A full disk counts as written: the
/// timeline is reachable, the probe only cannot grow.
pub async fn write_health_check<E: Env>(
    env: &E,
    conn: &ConnTarget,
    within: Duration,
) -> Result<(), ProbeError> {
    within_deadline(env, conn, within, |client| async move {
        match client.simple_query(CHECK_SQL).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) => {
                tracing::warn!("writability check: the disk is full");
                Ok(())
            }
            Err(e) => Err(ProbeError::Refused(format!(
                "the write was refused: {}",
                pg_error_text(&e)
            ))),
        }
    })
    .await
}

/// What pg_stat_statements holds now, the 100 statements with the most
/// execution time; empty without the extension, or when it is created but
/// not preloaded (then the view refuses to be read).
pub async fn statement_insights<E: Env>(
    env: &E,
    conn: &ConnTarget,
    within: Duration,
) -> Result<Vec<serde_json::Value>, ProbeError> {
    within_deadline(env, conn, within, |client| async move {
        let installed = client
            .simple_query(INSIGHTS_INSTALLED_SQL)
            .await
            .map_err(|e| ProbeError::Refused(pg_error_text(&e)))?;
        let Some(schema) = super::first_value(&installed) else {
            return Ok(Vec::new());
        };
        let rows = match client.simple_query(&insights_sql(&schema)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::info!(error = %e, "pg_stat_statements cannot be read; reporting no insights");
                return Ok(Vec::new());
            }
        };
        match super::first_value(&rows) {
            Some(t) => serde_json::from_str(&t).map_err(|e| {
                ProbeError::Unreadable(format!("pg_stat_statements rows are not JSON: {e}"))
            }),
            None => Ok(Vec::new()),
        }
    })
    .await
}
