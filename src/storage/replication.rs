//! What a replica or static compute's WAL receiver is doing, read from its
//! own Postgres in one round trip ([`REPLICATION_SQL`]), and, when it is not
//! streaming, why: the configured upstream is asked for its position, which
//! tells "unreachable" from "behind this replica" from "reachable, Postgres
//! will retry".

use std::time::Duration;

use serde::Serialize;

use super::{Endpoint, Lsn, wal_position};
use crate::env::Env;
use crate::params::ConnTarget;

/// One round trip: the WAL receiver's state and sender, the received
/// timeline, the receive and replay LSNs, the replay delay, the pause state.
pub const REPLICATION_SQL: &str = "SELECT (SELECT status FROM pg_stat_wal_receiver), \
     (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), \
     (SELECT received_tli FROM pg_stat_wal_receiver), \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, \
     pg_get_wal_replay_pause_state()";

/// Bounds the read from our own Postgres and the upstream probe.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The `replication` object of `/status` (null for a primary without safekeepers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplicationStatus {
    /// `primary`, `replica` or `static`.
    pub mode: String,
    /// The configured source (`pageserver_connstring`, password redacted).
    pub upstream: Option<String>,
    /// The WAL receiver streams (state `streaming` in `pg_stat_wal_receiver`).
    pub streaming: bool,
    /// The WAL receiver's state; null when none runs.
    pub wal_receiver: Option<String>,
    /// `host:port` the WAL receiver is connected to.
    pub sender: Option<String>,
    /// The timeline it receives.
    pub timeline: Option<u32>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// Received but not yet replayed.
    pub replay_lag_bytes: Option<u64>,
    /// Age of the last replayed transaction while replay is behind; 0 when caught up.
    pub replay_lag_ms: Option<u64>,
    /// Why it is not streaming (null while it streams).
    pub not_streaming_reason: Option<String>,
    /// The LSN a static compute stops at.
    pub static_lsn: Option<Lsn>,
    /// Whether replay has stopped there (`pg_get_wal_replay_pause_state()`).
    pub paused: Option<bool>,
    /// The safekeepers' commit LSN at start (null without safekeepers).
    pub commit_lsn: Option<Lsn>,
    /// Where the base backup ended (null after initdb).
    pub basebackup_lsn: Option<Lsn>,
}

/// What to read and how to explain it.
pub struct ReadReplication<'a> {
    /// Our own Postgres (the `-C` target).
    pub conn: &'a ConnTarget,
    /// The configured upstream, if it parses.
    pub upstream: Option<&'a Endpoint>,
}

/// Fills the live fields of `status` (receiver, LSNs, lag, reason) from
/// our Postgres; on failure the reason says why nothing could be read.
pub async fn read_replication<E: Env>(
    env: &E,
    what: &ReadReplication<'_>,
    status: &mut ReplicationStatus,
) {
    let ours = match Endpoint::parse(
        &format!(
            "host={} port={} user={} dbname={}",
            what.conn.host, what.conn.port, what.conn.user, what.conn.dbname
        ),
        &what.conn.user,
    ) {
        Ok(e) => e,
        Err(e) => {
            status.not_streaming_reason = Some(e.to_string());
            return;
        }
    };
    let row = match ours.query_row(env, REPLICATION_SQL, READ_TIMEOUT).await {
        Ok(r) => r,
        Err(e) => {
            status.streaming = false;
            status.not_streaming_reason = Some(format!(
                "cannot read the replication state of Postgres: {e}"
            ));
            return;
        }
    };
    let col = |i: usize| row.get(i).cloned().flatten();
    status.wal_receiver = col(0);
    status.sender = col(1);
    status.timeline = col(2).and_then(|s| s.parse().ok());
    status.receive_lsn = col(3).and_then(|s| s.parse().ok());
    status.replay_lsn = col(4).and_then(|s| s.parse().ok());
    let behind = match (status.receive_lsn, status.replay_lsn) {
        (Some(r), Some(p)) => r.bytes_ahead_of(p),
        _ => 0,
    };
    status.replay_lag_bytes = status.receive_lsn.map(|_| behind);
    status.replay_lag_ms = if behind == 0 {
        Some(0)
    } else {
        col(5)
            .and_then(|s| s.parse::<i64>().ok())
            .map(|v| v.max(0) as u64)
    };
    status.paused = col(6).map(|s| s == "paused");
    status.streaming = status.wal_receiver.as_deref() == Some("streaming");
    status.not_streaming_reason = if status.streaming {
        None
    } else {
        Some(explain(env, what.upstream, status).await)
    };
}

/// Why the WAL receiver is not streaming.
async fn explain<E: Env>(
    env: &E,
    upstream: Option<&Endpoint>,
    status: &ReplicationStatus,
) -> String {
    let receiver = match status.wal_receiver.as_deref() {
        Some(s) => format!("the WAL receiver is {s}"),
        None => "no WAL receiver runs".to_string(),
    };
    if status.paused == Some(true) {
        if let Some(l) = status.static_lsn {
            return format!("replay is paused at the static LSN {l} ({receiver})");
        }
        return format!("replay is paused ({receiver})");
    }
    let Some(up) = upstream else {
        return format!("{receiver}; no upstream is configured");
    };
    match wal_position(env, up, READ_TIMEOUT).await {
        Err(e) => format!("{receiver}: the upstream {} cannot be asked: {e}", up.shown),
        Ok(p) => match status.replay_lsn.or(status.receive_lsn) {
            Some(ours) if p.flushed < ours => format!(
                "{receiver}: the upstream {} is at {}, behind this replica's {ours}; streaming resumes once it catches up",
                up.shown, p.flushed
            ),
            _ => format!(
                "{receiver}; the upstream {} answers (at {}), Postgres retries every wal_retrieve_retry_interval",
                up.shown, p.flushed
            ),
        },
    }
}
