//! The compute announces itself to its safekeepers, as Neon's walproposer
//! connects out to them: each safekeeper (a streaming standby) gets
//! `primary_conninfo` = this compute's advertised address with its stable
//! `application_name` (`ALTER SYSTEM` + `pg_reload_conf()`: Postgres 13+
//! restarts the WAL receiver on a reload; a safekeeper is never restarted).
//! And, for `/status`, why a safekeeper does not stream.

use std::time::Duration;

use super::{Promoted, Safekeeper, SafekeeperStatus};
use crate::env::Env;
use crate::params::AdvertiseAddr;

/// `primary_conninfo` for `sk`: where this compute is, as whom to stream
/// (the supervisor's superuser, trusted from the safekeepers' addresses by
/// `pg_hba.conf`), and the name it streams under.
pub fn conninfo_for(advertised: &AdvertiseAddr, user: &str, sk: &Safekeeper) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    format!(
        "host={} port={} user={} application_name={}",
        q(&advertised.host),
        advertised.port,
        q(user),
        q(&sk.name)
    )
}

/// A SQL string literal (standard_conforming_strings: only `'` doubles).
fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Why a safekeeper could not be pointed at this compute.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error(transparent)]
    Session(#[from] super::SessionError),
    #[error(
        "{0} is not a standby (pg_is_in_recovery() is false); a safekeeper must be a streaming standby"
    )]
    NotAStandby(String),
}

/// Points `sk` at this compute; a no-op for Postgres when it already is.
pub async fn announce<E: Env>(
    env: &E,
    sk: &Safekeeper,
    conninfo: &str,
    within: Duration,
) -> Result<(), AnnounceError> {
    let set = format!(
        "ALTER SYSTEM SET primary_conninfo = {}",
        sql_literal(conninfo)
    );
    // One session: the look, then the change only when it is a standby
    // that points elsewhere (a session per step cost each safekeeper a
    // second backend fork and authentication on the start's path).
    let mut looking = true;
    let rows = sk
        .endpoint
        .first_rows_while(
            env,
            &[
                "SELECT pg_is_in_recovery(), current_setting('primary_conninfo')",
                &set,
                "SELECT pg_reload_conf()",
            ],
            within,
            |row| {
                // Only the look decides; the change runs to its end.
                !std::mem::take(&mut looking)
                    || (super::column(row, 0) == Some("t")
                        && super::column(row, 1) != Some(conninfo))
            },
        )
        .await?;
    let look = rows.first().cloned().unwrap_or_default();
    if super::column(&look, 0) != Some("t") {
        return Err(AnnounceError::NotAStandby(sk.endpoint.shown.clone()));
    }
    Ok(())
}

/// One round trip to a safekeeper that does not stream from the compute.
/// Its WAL positions (columns 2 and 3) are read before its timelines
/// (columns 4 to 6: its WAL receiver's, its last restartpoint's, its
/// newest segment file's): a receiver that crosses a timeline switch in
/// between then shows an older position on a newer timeline, which reads
/// as `catching_up`; the other order could show a position past the
/// switch on the timeline before it, which reads as `diverged`.
pub const ABSENT_SQL: &str = "SELECT pg_is_in_recovery(), \
     (SELECT status FROM pg_stat_wal_receiver), \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     (SELECT received_tli FROM pg_stat_wal_receiver), \
     (SELECT timeline_id FROM pg_control_checkpoint()), \
     (SELECT max(substr(f, 1, 8)) FROM pg_ls_dir('pg_wal') f WHERE f ~ '^[0-9A-F]{24}$')";

/// The state of a safekeeper without a WAL sender on the compute:
/// `unreachable` (with the error), `diverged` (its WAL goes past where its
/// timeline left this compute's history, or it is no standby: only the
/// storage can re-clone it), else `catching_up`.
pub async fn explain_absent<E: Env>(
    env: &E,
    sk: &Safekeeper,
    own: &Promoted,
    within: Duration,
) -> SafekeeperStatus {
    let mut st = SafekeeperStatus {
        name: sk.name.clone(),
        safekeeper: sk.endpoint.shown.clone(),
        state: "catching_up".into(),
        reason: None,
        flush_lsn: None,
        replay_lsn: None,
    };
    let row = match sk.endpoint.query_row(env, ABSENT_SQL, within).await {
        Ok(r) => r,
        Err(e) => {
            st.state = "unreachable".into();
            st.reason = Some(e.to_string());
            return st;
        }
    };
    let col = |i: usize| row.get(i).cloned().flatten();
    st.replay_lsn = col(3).and_then(|s| s.parse().ok());
    // Replayed WAL is flushed: the received LSN alone can sit at a segment
    // start below it (`storage::POSITION_SQL`).
    st.flush_lsn = col(2).and_then(|s| s.parse().ok()).max(st.replay_lsn);
    if col(0).as_deref() != Some("t") {
        st.state = "diverged".into();
        st.reason = Some("it is not a standby (pg_is_in_recovery() is false)".into());
        return st;
    }
    let reached = st.flush_lsn.max(st.replay_lsn);
    let tli = wal_timeline(&row);
    if let Some(at) = reached {
        let shared = tli.map_or(own.fork_lsn, |t| own.shared_up_to(t));
        if tli.is_none_or(|t| t < own.timeline) && at > shared {
            st.state = "diverged".into();
            st.reason = Some(format!(
                "its WAL reaches {at}{}, past where it left this compute's history ({shared}; this compute is on timeline {}); it cannot follow and must be re-cloned by the storage",
                tli.map(|t| format!(" on timeline {t}")).unwrap_or_default(),
                own.timeline
            ));
            return st;
        }
    }
    st.reason = Some(match col(1) {
        Some(s) => format!("its WAL receiver is {s}; it has not connected to this compute yet"),
        None => {
            "no WAL receiver runs on it yet (it retries every wal_retrieve_retry_interval)".into()
        }
    });
    st
}

/// The timeline of a safekeeper's WAL in its answer to [`ABSENT_SQL`]: the
/// one its WAL receiver receives; without one, the newer of its last
/// restartpoint's (which lags a timeline switch until the next
/// restartpoint) and its newest segment file's (replay on a timeline
/// writes that timeline's segments). Erring high only ever says
/// `catching_up` of a diverged safekeeper, never `diverged` of a good one.
fn wal_timeline(row: &[Option<String>]) -> Option<u32> {
    let col = |i: usize| row.get(i).cloned().flatten();
    if let Some(t) = col(4).and_then(|s| s.parse().ok()) {
        return Some(t);
    }
    let restartpoint = col(5).and_then(|s| s.parse::<u32>().ok());
    let segment = col(6).and_then(|s| u32::from_str_radix(&s, 16).ok());
    restartpoint.max(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: [Option<&str>; 7]) -> Vec<Option<String>> {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    /// A standby without a WAL receiver: its restartpoint's and newest
    /// segment's timelines.
    fn idle(restartpoint: &str, segment: &str) -> Vec<Option<String>> {
        row([
            Some("t"),
            None,
            None,
            None,
            None,
            Some(restartpoint),
            Some(segment),
        ])
    }

    #[test]
    fn the_timeline_of_a_safekeeper_without_a_receiver_is_its_newest_segment_s() {
        // Streaming: the receiver's timeline.
        let streaming = row([
            Some("t"),
            Some("streaming"),
            None,
            None,
            Some("3"),
            Some("1"),
            Some("00000003"),
        ]);
        assert_eq!(wal_timeline(&streaming), Some(3));
        // No receiver: the last restartpoint was on 1, but it replayed
        // onto timeline 2 (it wrote timeline 2's segments). Taking the
        // restartpoint's would call a good safekeeper diverged.
        assert_eq!(wal_timeline(&idle("1", "00000002")), Some(2));
        // Segments never below the restartpoint's timeline in practice;
        // the newer of the two either way.
        assert_eq!(wal_timeline(&idle("4", "00000002")), Some(4));
        let none = row([Some("t"), None, None, None, None, None, None]);
        assert_eq!(wal_timeline(&none), None);
    }
}
