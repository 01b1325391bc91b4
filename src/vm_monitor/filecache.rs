//! Neon's local file cache (LFC), sized with the memory the VM has.
//!
//! Only Neon's Postgres has one: `pg_settings` then lists
//! `neon.file_cache_size_limit`. We look once, when Postgres first runs; on
//! vanilla Postgres there is nothing to size and we say so in the log.
//! The size is Neon's: `min((usable - 256 MiB) / 1.1, 0.75 x usable)`, in
//! whole MiB, at most `neon.max_file_cache_size`. It is set with
//! `ALTER SYSTEM` and a configuration reload, as Neon's monitor does.

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::rules::MIB;
use crate::env::{Env, timeout};
use crate::params::ConnTarget;
use crate::pg;

/// Memory always left beside the cache.
pub const MIN_REMAINING: u64 = 256 * MIB;
/// The cache may take at most this share of usable memory...
pub const RESOURCE_MULTIPLIER: f64 = 0.75;
/// ...and leaves 10% of what remains over the minimum ("spread").
pub const SPREAD_FACTOR: f64 = 0.1;
/// Deadline of every file-cache SQL exchange.
const SQL_DEADLINE: Duration = Duration::from_secs(5);

/// The cache size for `usable` bytes of memory, in MiB, capped at `max_bytes`.
pub fn size_mib(usable: u64, max_bytes: u64) -> u64 {
    let available = usable.saturating_sub(MIN_REMAINING);
    if available == 0 {
        return 0;
    }
    let from_spread = (available as f64 / (1.0 + SPREAD_FACTOR)) as u64;
    let from_share = (usable as f64 * RESOURCE_MULTIPLIER) as u64;
    from_spread.min(from_share).min(max_bytes) / MIB
}

/// Why the file cache could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum FileCacheError {
    #[error("file cache: {0}")]
    Connect(#[from] pg::ConnectError),
    #[error("file cache: SQL failed: {0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("file cache: unexpected answer: {0}")]
    Unexpected(String),
    #[error("file cache: Postgres did not answer within {0:?}")]
    Timeout(Duration),
}

/// Neon's file cache, found in `pg_settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCache {
    pub conn: ConnTarget,
    /// `neon.max_file_cache_size` in bytes.
    pub max_bytes: u64,
}

/// The query: `neon.max_file_cache_size` in bytes when the neon extension
/// is loaded, no row on vanilla Postgres.
pub const DETECT_SQL: &str = "SELECT pg_size_bytes(current_setting('neon.max_file_cache_size')) \
     FROM pg_settings WHERE name = 'neon.file_cache_size_limit'";

async fn first_value<E: Env>(
    env: &E,
    conn: &ConnTarget,
    sql: &str,
) -> Result<Option<Option<String>>, FileCacheError> {
    let run = async {
        let client = pg::connect(env, conn, SQL_DEADLINE, SQL_DEADLINE).await?;
        let msgs = client.simple_query(sql).await?;
        Ok::<_, FileCacheError>(msgs.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        }))
    };
    timeout(env, SQL_DEADLINE * 2, run)
        .await
        .map_err(|_| FileCacheError::Timeout(SQL_DEADLINE * 2))?
}

/// Looks for Neon's file cache once; `None` on vanilla Postgres.
pub async fn detect<E: Env>(
    env: &E,
    conn: &ConnTarget,
) -> Result<Option<FileCache>, FileCacheError> {
    match first_value(env, conn, DETECT_SQL).await? {
        None => Ok(None),
        Some(v) => {
            let v = v.ok_or_else(|| {
                FileCacheError::Unexpected("neon.max_file_cache_size is NULL".into())
            })?;
            let max_bytes = v.parse::<u64>().map_err(|e| {
                FileCacheError::Unexpected(format!("neon.max_file_cache_size {v:?}: {e}"))
            })?;
            Ok(Some(FileCache {
                conn: conn.clone(),
                max_bytes,
            }))
        }
    }
}

impl FileCache {
    /// Sets the cache for `usable` bytes of memory; returns the MiB set.
    pub async fn resize<E: Env>(&self, env: &E, usable: u64) -> Result<u64, FileCacheError> {
        let mib = size_mib(usable, self.max_bytes);
        // ALTER SYSTEM cannot run in a transaction block: one statement each.
        first_value(
            env,
            &self.conn,
            &format!("ALTER SYSTEM SET neon.file_cache_size_limit = {mib}"),
        )
        .await?;
        first_value(env, &self.conn, "SELECT pg_reload_conf()").await?;
        Ok(mib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const NO_CAP: u64 = u64::MAX;

    #[test]
    fn small_machines_get_the_spread_bound() {
        // 1 GiB: (1024 - 256) / 1.1 = 698.18 MiB < 0.75 x 1024 = 768 MiB.
        assert_eq!(size_mib(GIB, NO_CAP), 698);
    }

    #[test]
    fn large_machines_get_three_quarters() {
        // 16 GiB: (16384 - 256) / 1.1 = 14661.8 MiB > 0.75 x 16384 = 12288 MiB.
        assert_eq!(size_mib(16 * GIB, NO_CAP), 12288);
    }

    #[test]
    fn the_cap_and_the_floor_hold() {
        assert_eq!(size_mib(16 * GIB, 2 * GIB), 2048);
        assert_eq!(size_mib(256 * MIB, NO_CAP), 0);
        assert_eq!(size_mib(100 * MIB, NO_CAP), 0);
        // Whole MiB, rounded down: 301 MiB leaves 45 MiB / 1.1 = 40.9 MiB.
        assert_eq!(size_mib(301 * MIB, NO_CAP), 40);
        assert_eq!(size_mib(301 * MIB + 1000, NO_CAP), 40);
    }
}
