//! Neon's `compute_installed_extensions{extension_name,version,owned_by_superuser}`
//! metric: in how many databases each version of each extension is
//! installed. Collected once Postgres runs, then every
//! `--installed-extensions-collection-interval`, as Neon's compute_ctl does.
//! A failed collection keeps the last figures and is logged once per streak.

use std::sync::Arc;
use std::time::Duration;

use crate::compute::Compute;
use crate::env::{Env, timeout};
use crate::pg;
use crate::state::ComputeStatus;

/// Bounds one database's query (and the connection to it).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many databases are looked at (as Neon).
const MAX_DATABASES: i64 = 500;

/// One series: (extension, version, owned by the bootstrap superuser) -> databases.
pub type Counts = crate::metrics::ExtensionCounts;

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("installed extensions: {0}")]
    Connect(#[from] pg::ConnectError),
    #[error("installed extensions: reading {what} failed: {}", pg::describe_error(.source))]
    Query {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("installed extensions: Postgres did not answer within {0:?}")]
    Timeout(Duration),
}

/// Counts the installed extensions of every database that accepts connections.
pub async fn collect<E: Env>(compute: &Compute<E>) -> Result<Counts, CollectError> {
    let conn = &compute.params().conn;
    let work = async {
        let client = pg::connect(compute.env(), conn, QUERY_TIMEOUT, QUERY_TIMEOUT).await?;
        let rows = client
            .query(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn \
                 AND datconnlimit <> -2 ORDER BY datname LIMIT $1",
                &[&MAX_DATABASES],
            )
            .await
            .map_err(|source| CollectError::Query {
                what: "pg_database".into(),
                source,
            })?;
        let databases: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let mut counts = Counts::new();
        for db in databases {
            let client = pg::connect(
                compute.env(),
                &conn.with_dbname(&db),
                QUERY_TIMEOUT,
                QUERY_TIMEOUT,
            )
            .await?;
            let rows = client
                .query(
                    "SELECT extname::text, extversion, extowner = 10 FROM pg_catalog.pg_extension",
                    &[],
                )
                .await
                .map_err(|source| CollectError::Query {
                    what: format!("pg_extension of database {db:?}"),
                    source,
                })?;
            for r in rows {
                *counts.entry((r.get(0), r.get(1), r.get(2))).or_default() += 1;
            }
        }
        Ok(counts)
    };
    // One deadline per database, plus the listing.
    match timeout(compute.env(), QUERY_TIMEOUT * 4, work).await {
        Ok(r) => r,
        Err(_) => Err(CollectError::Timeout(QUERY_TIMEOUT * 4)),
    }
}

/// Collects while the compute runs, every `interval`, until it stops.
pub async fn run<E: Env>(compute: Arc<Compute<E>>, interval: Duration) {
    let mut rx = compute.subscribe();
    let mut failing = false;
    loop {
        let running =
            rx.wait_for(|st| st.status == ComputeStatus::Running || st.status.is_terminating());
        let status = match running.await {
            Ok(st) => st.status,
            Err(_) => return,
        };
        if status != ComputeStatus::Running {
            return;
        }
        match collect(&compute).await {
            Ok(counts) => {
                failing = false;
                compute.metrics().set_installed_extensions(&counts);
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "installed extensions not collected; retrying at the next interval");
            }
            Err(_) => {}
        }
        let stopping = rx.wait_for(|st| st.status.is_terminating());
        tokio::select! {
            biased;
            _ = stopping => return,
            () = compute.env().sleep(interval) => {}
        }
    }
}
