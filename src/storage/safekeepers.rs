//! Sync safekeepers: ask every WAL server how far its WAL is durable, in
//! parallel with a deadline each, and agree on the commit LSN, the highest
//! LSN that a majority of them has reached. Here a safekeeper is a Postgres
//! server: `pg_current_wal_flush_lsn()` on a primary, the greater of
//! `pg_last_wal_receive_lsn()` and `pg_last_wal_replay_lsn()` on a standby
//! ([`POSITION_SQL`]).
//!
//! Every safekeeper is waited for (each at most its deadline), so the commit
//! LSN is never below what a majority acknowledged: a late answer with a
//! higher LSN would otherwise be missed.

use std::time::Duration;

use futures::future::join_all;

use super::endpoint::first_row_of;
use super::{Endpoint, Lsn, OpenSession, SessionError};
use crate::env::Env;
pub use crate::spec::majority;

/// One round trip: whether the server is in recovery, how far its WAL is
/// durable (flushed on a primary; on a standby the greater of received and
/// replayed) and how far it has replayed (= flushed on a primary).
///
/// Not the received LSN alone: each time a standby's WAL receiver starts
/// on another timeline, or first after a restart, Postgres sets it back to
/// the start of the segment it asks for, below WAL the standby holds and
/// replayed. Seen on Postgres 15: three safekeepers that had taken an
/// empty branch as their target all answered 0/5000000 with 0/583FAC0
/// replayed. Ranked by that, a start could catch up from a safekeeper that
/// holds less than one that restarted, and fork below commits a majority
/// acknowledged.
pub const POSITION_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_flush_lsn() END, \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END";

/// Where a server's WAL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalPosition {
    pub in_recovery: bool,
    /// Durable on this server.
    pub flushed: Lsn,
    /// Replayed (what a base backup of it contains at least).
    pub replayed: Lsn,
}

/// Asks `ep` for its [`WalPosition`] within `within`.
pub async fn wal_position<E: Env>(
    env: &E,
    ep: &Endpoint,
    within: Duration,
) -> Result<WalPosition, SessionError> {
    let row = ep.query_row(env, POSITION_SQL, within).await?;
    position_of(&row, &ep.addr())
}

/// The [`WalPosition`] in `row`, the first row [`POSITION_SQL`] answered
/// at `addr`.
pub(super) fn position_of(row: &[Option<String>], addr: &str) -> Result<WalPosition, SessionError> {
    let unexpected = |what: String| SessionError::Unexpected {
        addr: addr.to_string(),
        what,
    };
    let lsn = |i: usize| -> Result<Lsn, SessionError> {
        match row.get(i).cloned().flatten() {
            Some(s) => s
                .parse()
                .map_err(|e: super::LsnParseError| unexpected(e.to_string())),
            None => Err(unexpected(
                "no WAL position yet (a standby that has neither received nor replayed WAL)".into(),
            )),
        }
    };
    Ok(WalPosition {
        in_recovery: super::column(row, 0) == Some("t"),
        flushed: lsn(1)?,
        replayed: lsn(2)?,
    })
}

/// What a durable start's sync learns of one safekeeper: its position, its
/// newest timeline, the newest it knows of, its newest history file.
type Asked = (WalPosition, u32, Option<u32>, Option<(u32, String)>);

/// [`WalPosition`], newest timeline (0 when it cannot say, see
/// [`super::NEWEST_TIMELINE_SQL`]) and the newest timeline it knows of
/// (`None` when it cannot say, see [`super::catchup::known_of`]) of `ep`, on
/// one session within `within`, which stays open: a start's sync then
/// needs no second connection per safekeeper, nor does its claim.
async fn position_and_timeline<E: Env>(
    env: &E,
    ep: &Endpoint,
    within: Duration,
) -> Result<(Asked, OpenSession), SessionError> {
    ep.with_kept_session(env, within, async |client, addr| {
        let row = first_row_of(client, addr, POSITION_SQL).await?;
        let position = position_of(&row, addr)?;
        let answer = first_row_of(client, addr, super::NEWEST_TIMELINE_SQL).await;
        let history = super::catchup::history_of(&answer);
        let timeline = super::timeline_at(
            super::catchup::timeline_of(ep, &answer),
            history.as_ref(),
            position.flushed,
        );
        Ok((
            position,
            timeline,
            super::catchup::known_of(&answer),
            history,
        ))
    })
    .await
}

/// The highest LSN that at least a majority of `total` safekeepers has
/// reached, given the LSNs of those that answered; `None` without a quorum.
pub fn commit_lsn(total: usize, reached: &[Lsn]) -> Option<Lsn> {
    let need = majority(total);
    if total == 0 || reached.len() < need {
        return None;
    }
    let mut sorted = reached.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.get(need - 1).copied()
}

/// One safekeeper's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SafekeeperAnswer {
    /// Its connection string, password redacted.
    pub safekeeper: String,
    pub flush_lsn: Option<Lsn>,
    pub error: Option<String>,
}

impl std::fmt::Display for SafekeeperAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.flush_lsn, &self.error) {
            (Some(l), _) => write!(f, "{} at {l}", self.safekeeper),
            (None, Some(e)) => write!(f, "{}: {e}", self.safekeeper),
            (None, None) => write!(f, "{}: no answer", self.safekeeper),
        }
    }
}

/// The outcome of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub commit_lsn: Lsn,
    pub answers: Vec<SafekeeperAnswer>,
    /// Each answer's newest timeline, when the sync was asked for them
    /// ([`SyncAsk::PositionsAndTimelines`]); 0 when not asked or not known.
    pub timelines: Vec<u32>,
    /// The newest timeline each answer knows of (its WAL's, a history
    /// file's or a claimed one, [`super::catchup::known_of`]); `None` when
    /// not asked or not known.
    pub known: Vec<Option<u32>>,
    /// Each answer's newest history file, `(timeline, content)`.
    pub histories: Vec<Option<(u32, String)>>,
    /// Each answer's Postgres major, as its session reported it at
    /// startup; `None` when not asked or not known.
    pub majors: Vec<Option<u32>>,
}

/// A durable start's sync ([`sync_for_start`]): its outcome, and the
/// session to each safekeeper that answered (`None` for one that did not),
/// kept open for the timeline claim that follows.
pub struct StartSync {
    pub outcome: SyncOutcome,
    pub sessions: Vec<Option<OpenSession>>,
}

/// A sync without a quorum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "syncing safekeepers failed: {answered} of {total} answered within {deadline:?}, a majority of {need} is needed; answers: {}; bring the safekeepers up or fix safekeeper_connstrings",
    .answers.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; ")
)]
pub struct NoQuorum {
    pub total: usize,
    pub answered: usize,
    pub need: usize,
    pub deadline: Duration,
    pub answers: Vec<SafekeeperAnswer>,
}

/// Asks every safekeeper of `connstrings` in parallel (each within
/// `deadline`) for its WAL position, and returns the commit LSN with every
/// answer (`/terminate`'s LSN).
pub async fn sync_safekeepers<E: Env>(
    env: &E,
    connstrings: &[String],
    default_user: &str,
    deadline: Duration,
) -> Result<SyncOutcome, NoQuorum> {
    sync_with(env, connstrings, default_user, deadline, false)
        .await
        .map(|s| s.outcome)
}

/// A start's sync: each safekeeper's position, then its newest timeline on
/// the same session (a start ranks the safekeepers by both), which is kept
/// ([`StartSync`]).
pub async fn sync_for_start<E: Env>(
    env: &E,
    connstrings: &[String],
    default_user: &str,
    deadline: Duration,
) -> Result<StartSync, NoQuorum> {
    sync_with(env, connstrings, default_user, deadline, true).await
}

/// Asks every safekeeper of `connstrings` in parallel (with `for_start`,
/// [`sync_for_start`]'s questions, else its position alone), and agrees
/// on the commit LSN.
async fn sync_with<E: Env>(
    env: &E,
    connstrings: &[String],
    default_user: &str,
    deadline: Duration,
    for_start: bool,
) -> Result<StartSync, NoQuorum> {
    let ask = async |ep: &Endpoint| -> Result<(Asked, Option<OpenSession>), SessionError> {
        if for_start {
            let (asked, session) = position_and_timeline(env, ep, deadline).await?;
            Ok((asked, Some(session)))
        } else {
            let p = wal_position(env, ep, deadline).await?;
            Ok(((p, 0, None, None), None))
        }
    };
    let ask = &ask;
    let asks = connstrings.iter().map(|c| async move {
        let ep = match Endpoint::parse(c, default_user) {
            Err(e) => {
                let answer = SafekeeperAnswer {
                    safekeeper: crate::pg::redact_connstr(c),
                    flush_lsn: None,
                    error: Some(e.to_string()),
                };
                return (answer, (0, None, None), None);
            }
            Ok(ep) => ep,
        };
        let r = ask(&ep).await;
        let answer = SafekeeperAnswer {
            safekeeper: ep.shown.clone(),
            flush_lsn: r.as_ref().ok().map(|((p, _, _, _), _)| p.flushed),
            error: r.as_ref().err().map(|e| e.to_string()),
        };
        match r {
            Ok(((_, timeline, known, history), session)) => {
                (answer, (timeline, known, history), session)
            }
            Err(_) => (answer, (0, None, None), None),
        }
    });
    let mut answers = Vec::new();
    let (mut timelines, mut known, mut histories) = (Vec::new(), Vec::new(), Vec::new());
    let mut sessions = Vec::new();
    for (answer, (t, k, h), session) in join_all(asks).await {
        answers.push(answer);
        timelines.push(t);
        known.push(k);
        histories.push(h);
        sessions.push(session);
    }
    let majors = sessions
        .iter()
        .map(|s: &Option<OpenSession>| s.as_ref().and_then(OpenSession::server_major))
        .collect();
    let reached: Vec<Lsn> = answers.iter().filter_map(|a| a.flush_lsn).collect();
    match commit_lsn(connstrings.len(), &reached) {
        Some(commit_lsn) => Ok(StartSync {
            outcome: SyncOutcome {
                commit_lsn,
                answers,
                timelines,
                known,
                histories,
                majors,
            },
            sessions,
        }),
        None => Err(NoQuorum {
            total: connstrings.len(),
            answered: reached.len(),
            need: majority(connstrings.len()),
            deadline,
            answers,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commit_lsn_is_what_a_majority_reached() {
        let l = |v: &[u64]| v.iter().map(|&x| Lsn(x)).collect::<Vec<_>>();
        assert_eq!(commit_lsn(3, &l(&[10, 30, 20])), Some(Lsn(20)));
        assert_eq!(commit_lsn(3, &l(&[10, 30])), Some(Lsn(10)));
        assert_eq!(commit_lsn(3, &l(&[30])), None);
        assert_eq!(commit_lsn(1, &l(&[7])), Some(Lsn(7)));
        assert_eq!(commit_lsn(4, &l(&[1, 2, 3])), Some(Lsn(1)));
        assert_eq!(commit_lsn(4, &l(&[1, 2])), None);
        assert_eq!(commit_lsn(0, &[]), None);
    }

    proptest! {
        /// A majority has reached the commit LSN, and no higher LSN has a majority.
        #[test]
        fn commit_lsn_is_the_highest_with_a_majority(
            total in 1usize..8,
            reached in proptest::collection::vec(0u64..100, 0..8),
        ) {
            let reached: Vec<Lsn> = reached.into_iter().take(total).map(Lsn).collect();
            let need = majority(total);
            match commit_lsn(total, &reached) {
                None => prop_assert!(reached.len() < need),
                Some(c) => {
                    prop_assert!(reached.iter().filter(|l| **l >= c).count() >= need);
                    prop_assert!(reached.iter().filter(|l| **l > c).count() < need);
                }
            }
        }
    }
}
