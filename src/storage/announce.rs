//! The compute announces itself to its safekeepers, as Neon's walproposer
//! connects out to them: each safekeeper (a streaming standby) gets
//! `primary_conninfo` = this compute's advertised address with its stable
//! `application_name` (`ALTER SYSTEM` + `pg_reload_conf()`: Postgres 13+
//! restarts the WAL receiver on a reload; a safekeeper is never restarted).
//! And, for `/status`, why a safekeeper does not stream.

use std::time::Duration;

use super::{Lsn, Safekeeper, SafekeeperStatus};
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

/// One round trip to a safekeeper that has no WAL sender on the compute.
const ABSENT_SQL: &str = "SELECT pg_is_in_recovery(), \
     (SELECT status FROM pg_stat_wal_receiver), (SELECT received_tli FROM pg_stat_wal_receiver), \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), (SELECT timeline_id FROM pg_control_checkpoint())";

/// The state of a safekeeper without a WAL sender on the compute:
/// `unreachable` (with the error), `diverged` (its WAL goes past this
/// compute's fork point on an older timeline, or it is no standby: only
/// the storage can re-clone it), else `catching_up`.
pub async fn explain_absent<E: Env>(
    env: &E,
    sk: &Safekeeper,
    timeline: u32,
    fork_lsn: Lsn,
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
    st.replay_lsn = col(4).and_then(|s| s.parse().ok());
    // Replayed WAL is flushed: the received LSN alone can sit at a segment
    // start below it (`storage::POSITION_SQL`).
    st.flush_lsn = col(3).and_then(|s| s.parse().ok()).max(st.replay_lsn);
    if col(0).as_deref() != Some("t") {
        st.state = "diverged".into();
        st.reason = Some("it is not a standby (pg_is_in_recovery() is false)".into());
        return st;
    }
    // The timeline it receives; without a WAL receiver, that of its last
    // restart point (a lower bound).
    let tli = col(2).or(col(5)).and_then(|s| s.parse::<u32>().ok());
    let reached = st.flush_lsn.max(st.replay_lsn);
    if let Some(at) = reached.filter(|l| *l > fork_lsn) {
        if tli.is_none_or(|t| t < timeline) {
            st.state = "diverged".into();
            st.reason = Some(format!(
                "its WAL reaches {at}{}, past where this compute's timeline {timeline} forked ({fork_lsn}); it cannot follow and must be re-cloned by the storage",
                tli.map(|t| format!(" on timeline {t}")).unwrap_or_default()
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
