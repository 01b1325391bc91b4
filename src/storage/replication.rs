//! What a replica or static compute's WAL receiver is doing, read from its
//! own Postgres in one round trip ([`REPLICATION_SQL`]), how far its replay
//! is behind its source, and, when it is not streaming, why.
//!
//! The lag is measured against the source itself, not against what the
//! replica received: under `--max-ready-lag` (which judges it), a
//! replica's source (`pageserver_connstring`) is asked for its position ([`wal_position`]: what a client of it sees, the flushed
//! WAL of a primary or the replayed WAL of a standby) on a short deadline,
//! right before the replica's own read. Bytes: the source's position minus
//! the replica's replay LSN. Time: how long ago the source was last seen at
//! a position the replica has replayed ([`SourceTrail`], on the Env's
//! monotonic clock). The same answer tells "unreachable" from "behind this
//! replica" from "reachable, Postgres will retry" when it does not stream.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;

use super::{Endpoint, Lsn, SessionError, WalPosition, wal_position};
use crate::env::Env;
use crate::params::ConnTarget;

/// One round trip: the WAL receiver's state and sender, the received
/// timeline, the receive and replay LSNs, the pause state. (Not
/// `pg_last_xact_replay_timestamp()`: its age grows while the source
/// commits nothing, so it is no lag.)
pub const REPLICATION_SQL: &str = "SELECT (SELECT status FROM pg_stat_wal_receiver), \
     (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), \
     (SELECT received_tli FROM pg_stat_wal_receiver), \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     pg_get_wal_replay_pause_state()";

/// Bounds the read from our own Postgres.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds the question to the source, so that an unreachable source costs
/// a sample at most this much.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// The source's position when last asked (a replica under
    /// `--max-ready-lag` only; null otherwise): what its
    /// clients see, the flushed WAL of a primary or the replayed WAL of a
    /// standby. Kept from the last answer while the source cannot be asked.
    pub source_lsn: Option<Lsn>,
    /// Why the source could not be asked at the last sample (null when it
    /// answered, and for a primary or static compute, which do not ask).
    pub source_error: Option<String>,
    /// The source's position minus the replay LSN (0 when replay reached
    /// it); null until the source answered once, and when it is not asked.
    pub replay_lag_bytes: Option<u64>,
    /// How long ago the source was last seen at a position replay has
    /// reached ([`SourceTrail`]); 0 when replay reached the source's last
    /// position; null while replay is behind every position seen, and when
    /// the source is not asked.
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
    /// Whether a replica asks its source for the lag (only under
    /// `--max-ready-lag`, which judges it: the question is a session on the
    /// source every sample).
    pub ask_source: bool,
}

/// The source's positions as the watcher saw them, oldest first, each with
/// the last time it was seen there: what the replay lag in time is read
/// from. The lag of a replay LSN `r` is `now - t`, `t` the latest time the
/// source was seen at a position `<= r`; 0 when `r` reached the source's
/// last position; unknown (`None`) while `r` is behind every position kept.
///
/// Positions replay has passed are dropped (only the newest of them is
/// needed), and at most [`SourceTrail::CAP`] are kept: with the oldest
/// dropped, a replay behind them all has an unknown lag, which is never a
/// ready one. A new source starts a new trail.
#[derive(Debug, Default, Clone)]
pub struct SourceTrail {
    seen: VecDeque<(Lsn, Instant)>,
}

impl SourceTrail {
    /// One hour of samples at one a second.
    pub const CAP: usize = 3600;

    /// The source was at `lsn` at `at` (times never go back).
    pub fn record(&mut self, lsn: Lsn, at: Instant) {
        match self.seen.back_mut() {
            // Not moved (or an older answer): it is still there now.
            Some((last, t)) if lsn <= *last => {
                if lsn == *last {
                    *t = at;
                }
            }
            _ => {
                if self.seen.len() == Self::CAP {
                    self.seen.pop_front();
                }
                self.seen.push_back((lsn, at));
            }
        }
    }

    /// The replay lag in time of `replay` at `now` (see the type's docs).
    pub fn lag(&mut self, replay: Lsn, now: Instant) -> Option<Duration> {
        while self.seen.len() >= 2 && self.seen[1].0 <= replay {
            self.seen.pop_front();
        }
        let (last, _) = *self.seen.back()?;
        if replay >= last {
            return Some(Duration::ZERO);
        }
        match self.seen.front() {
            Some(&(lsn, t)) if lsn <= replay => Some(now.saturating_duration_since(t)),
            _ => None,
        }
    }
}

/// Fills the live fields of `status` (receiver, LSNs, lag, reason): a
/// replica's source is asked first when `what.ask_source` (within
/// [`SOURCE_TIMEOUT`]) and recorded in `trail`, then our Postgres; on
/// failure the reason says why nothing could be read.
pub async fn read_replication<E: Env>(
    env: &E,
    what: &ReadReplication<'_>,
    status: &mut ReplicationStatus,
    trail: &mut SourceTrail,
) {
    let asks = what.ask_source && status.mode == "replica";
    let source = match what.upstream {
        Some(up) if asks => Some(
            wal_position(env, up, SOURCE_TIMEOUT)
                .await
                .map_err(|e| (up, e)),
        ),
        _ => None,
    };
    match &source {
        Some(Ok(p)) => {
            trail.record(p.replayed, env.now());
            status.source_lsn = Some(p.replayed);
            status.source_error = None;
        }
        Some(Err((up, e))) => {
            status.source_error = Some(format!("the source {} cannot be asked: {e}", up.shown));
        }
        None if asks => {
            status.source_error = Some("no source is configured".to_string());
        }
        None => status.source_error = None,
    }
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
    (status.replay_lag_bytes, status.replay_lag_ms) = match (status.source_lsn, status.replay_lsn) {
        (Some(src), Some(replay)) => (
            Some(src.bytes_ahead_of(replay)),
            trail
                .lag(replay, env.now())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
        _ => (None, None),
    };
    status.paused = col(5).map(|s| s == "paused");
    status.streaming = status.wal_receiver.as_deref() == Some("streaming");
    status.not_streaming_reason = if status.streaming {
        None
    } else {
        Some(explain(env, what.upstream, source, status).await)
    };
}

/// Why the WAL receiver is not streaming; `source` is the replica's
/// answer from its source this sample (`None`: not asked yet).
async fn explain<E: Env>(
    env: &E,
    upstream: Option<&Endpoint>,
    source: Option<Result<WalPosition, (&Endpoint, SessionError)>>,
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
    let answer = match source {
        Some(a) => a.map_err(|(_, e)| e),
        None => wal_position(env, up, READ_TIMEOUT).await,
    };
    match answer {
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the fake clock's origin
mod tests {
    use super::*;

    #[test]
    fn the_lag_in_time_is_since_the_source_was_last_where_replay_is() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut trail = SourceTrail::default();
        assert_eq!(trail.lag(Lsn(5), at(0)), None, "nothing seen yet");
        trail.record(Lsn(100), at(0));
        assert_eq!(trail.lag(Lsn(50), at(0)), None, "behind all it saw");
        assert_eq!(trail.lag(Lsn(100), at(0)), Some(Duration::ZERO));
        // The source stays at 100 until 3 s, then writes on.
        trail.record(Lsn(100), at(3));
        trail.record(Lsn(200), at(4));
        trail.record(Lsn(300), at(5));
        assert_eq!(trail.lag(Lsn(150), at(6)), Some(Duration::from_secs(3)));
        assert_eq!(trail.lag(Lsn(200), at(6)), Some(Duration::from_secs(2)));
        assert_eq!(trail.lag(Lsn(300), at(6)), Some(Duration::ZERO));
        assert_eq!(trail.lag(Lsn(400), at(6)), Some(Duration::ZERO));
        assert_eq!(trail.seen.len(), 1, "passed positions are dropped");
    }

    #[test]
    fn the_trail_is_bounded_and_a_replay_behind_it_has_no_known_lag() {
        let t0 = Instant::now();
        let mut trail = SourceTrail::default();
        for i in 0..(SourceTrail::CAP as u64 + 10) {
            trail.record(Lsn(i + 1), t0 + Duration::from_secs(i));
        }
        assert_eq!(trail.seen.len(), SourceTrail::CAP);
        assert_eq!(
            trail.seen.front(),
            Some(&(Lsn(11), t0 + Duration::from_secs(10)))
        );
        assert_eq!(trail.lag(Lsn(5), t0 + Duration::from_secs(4000)), None);
        assert_eq!(
            trail.lag(Lsn(11), t0 + Duration::from_secs(4000)),
            Some(Duration::from_secs(3990))
        );
    }
}
