//! The supervisor's own SQL sessions, opened through the Env seam.
//!
//! Sessions pin the settings a user's `ALTER DATABASE/ROLE ... SET` could
//! otherwise impose on us (statement_timeout, default_transaction_read_only,
//! search_path, ...) in the startup packet, so they cost no extra round trip.

use std::time::Duration;

use crate::env::{Env, timeout};
use crate::params::ConnTarget;

/// The `application_name` of the supervisor's sessions (the activity monitor
/// ignores them).
pub const APPLICATION_NAME: &str = "compute_ctl";

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach Postgres at {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("Postgres at {addr} refused the session as {user} in database {dbname:?}: {}", super::describe_error(.source))]
    Startup {
        addr: String,
        user: String,
        dbname: String,
        source: tokio_postgres::Error,
    },
    #[error("connecting to Postgres at {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
}

/// Session options that user-level defaults must not change under us.
/// `statement_timeout` bounds every statement the supervisor sends. A held
/// session (the check's, a start's catalog plan made during the quorum
/// wait) may sit idle for seconds: a spec's `idle_session_timeout` must
/// not close it.
pub fn session_options(statement_timeout: Duration) -> String {
    format!(
        "-c statement_timeout={} -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 \
         -c idle_session_timeout=0 -c default_transaction_read_only=off -c search_path=pg_catalog -c client_min_messages=warning",
        statement_timeout.as_millis()
    )
}

/// Opens a session to `target` as the supervisor; the connection task runs in
/// the background until the client is dropped.
pub async fn connect<E: Env>(
    env: &E,
    target: &ConnTarget,
    statement_timeout: Duration,
    connect_timeout: Duration,
) -> Result<tokio_postgres::Client, ConnectError> {
    let addr = format!("{}:{}", target.host, target.port);
    let attempt = async {
        let stream = env
            .connect(&target.host, target.port)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.clone(),
                source,
            })?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.user(&target.user)
            .dbname(&target.dbname)
            .application_name(APPLICATION_NAME)
            .options(session_options(
                if crate::planted::active(crate::planted::Bug::NoStatementTimeout) {
                    Duration::ZERO
                } else {
                    statement_timeout
                },
            ));
        let (client, connection) = cfg
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|source| ConnectError::Startup {
                addr: addr.clone(),
                user: target.user.clone(),
                dbname: target.dbname.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "supervisor SQL session ended");
            }
        });
        Ok(client)
    };
    match timeout(env, connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            addr,
            after: connect_timeout,
        }),
    }
}

/// The planted [`crate::planted::Bug::ReloadViaSql`] reload: `SELECT
/// pg_reload_conf()` with no client-side deadline, as Neon's compute_ctl
/// did (here, not in `planted`, so that `planted` imports nothing).
pub async fn reload_via_sql<E: Env>(env: &E, conn: &ConnTarget) -> std::io::Result<()> {
    let timeout = std::time::Duration::from_secs(10);
    let client = connect(env, conn, std::time::Duration::ZERO, timeout)
        .await
        .map_err(std::io::Error::other)?;
    client
        .simple_query("SELECT pg_reload_conf()")
        .await
        .map(|_| ())
        .map_err(std::io::Error::other)
}

/// The first column of the first row among `rows` (none: no row, or NULL).
pub fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}
