//! One supervisor session held open across reconfigures, for the check
//! after every reload (`file_settings.rs`), and another for the
//! safekeepers' watcher, which asks `pg_stat_replication` every second.
//!
//! A notify costs what a reload costs: opening a session per check added a
//! backend fork, an authentication and a TCP handshake (3–4 ms on loopback)
//! to every notify, more than the reload itself. The session is opened at
//! the first check and kept; one that Postgres closed (a restart, a crash,
//! a terminated backend) is noticed at the next use and replaced once. It
//! carries the supervisor's `application_name`, so the activity monitor
//! ignores it, and a fast shutdown ends it like any other.
//!
//! **Invariant:** a statement sent here either ran on a session opened
//! since Postgres last started, or its error is returned: a stale session
//! never answers for a new postmaster.

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::connect::{ConnectError, connect};
use crate::env::Env;
use crate::params::ConnTarget;

/// Why a statement on the held session failed.
#[derive(Debug, thiserror::Error)]
pub enum HeldSessionError {
    #[error("cannot open a session: {0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(
        "no answer within {0:?}: Postgres is overloaded or stuck; the next use asks again on a new session"
    )]
    Timeout(Duration),
}

/// The held session (none until first used).
#[derive(Default)]
pub struct HeldSession {
    client: tokio::sync::Mutex<Option<Client>>,
}

impl HeldSession {
    /// Runs `sql` (simple protocol) on the held session, opening it first
    /// when there is none or Postgres closed it. A statement that fails on
    /// a session Postgres closed meanwhile is run once more on a new one;
    /// any other failure drops the session (the next use opens a new one)
    /// and is returned.
    pub async fn simple_query<E: Env>(
        &self,
        env: &E,
        target: &ConnTarget,
        sql: &str,
        statement_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Vec<SimpleQueryMessage>, HeldSessionError> {
        let mut held = self.client.lock().await;
        let (client, reused) = match held.take() {
            Some(c) if !c.is_closed() => (c, true),
            _ => (
                connect(env, target, statement_timeout, connect_timeout).await?,
                false,
            ),
        };
        match client.simple_query(sql).await {
            Ok(rows) => {
                *held = Some(client);
                Ok(rows)
            }
            Err(e) if reused && client.is_closed() => {
                tracing::debug!(error = %e, "the held session was closed by Postgres; opening a new one");
                let client = connect(env, target, statement_timeout, connect_timeout).await?;
                let rows = client.simple_query(sql).await?;
                *held = Some(client);
                Ok(rows)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`query_value`](Self::query_value) on the held session only if one
    /// is open: it never connects, since a session opened here would keep
    /// `within` as its statement timeout for every later use. `None` when
    /// no session is open; a session cut off by the deadline is dropped.
    pub async fn query_value_if_open<E: Env>(
        &self,
        env: &E,
        sql: &str,
        within: Duration,
    ) -> Option<Result<Option<String>, HeldSessionError>> {
        let mut held = self.client.lock().await;
        let client = match held.take() {
            Some(c) if !c.is_closed() => c,
            _ => return None,
        };
        Some(
            match crate::env::timeout(env, within, client.simple_query(sql)).await {
                Ok(Ok(rows)) => {
                    *held = Some(client);
                    Ok(super::first_value(&rows))
                }
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(HeldSessionError::Timeout(within)),
            },
        )
    }

    /// The first column of the first row of `sql`, all within `within`,
    /// connect included. A session cut off by the deadline is dropped, so
    /// the next use opens a new one.
    pub async fn query_value<E: Env>(
        &self,
        env: &E,
        target: &ConnTarget,
        sql: &str,
        within: Duration,
    ) -> Result<Option<String>, HeldSessionError> {
        let rows = crate::env::timeout(
            env,
            within,
            self.simple_query(env, target, sql, within, within),
        )
        .await
        .map_err(|_| HeldSessionError::Timeout(within))??;
        Ok(super::first_value(&rows))
    }
}
