//! Waiting for the source of a base backup to reach an LSN (the commit LSN):
//! a base backup of it then holds everything committed.

use std::time::Duration;

use super::endpoint::OpenSession;
use super::safekeepers::position_of;
use super::{Endpoint, Lsn, POSITION_SQL, SessionError, WalPosition};
use crate::env::{Env, Pace};

/// One position query's deadline.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// A storage's first and largest pause between two questions.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);
/// Our own Postgres is asked every [`OWN_POLL_FAST`] for the first
/// [`OWN_FAST_FOR`], then at doubling pauses up to [`OWN_POLL_SLOW`]
/// ([`Polling::Own`]).
const OWN_POLL_FAST: Duration = Duration::from_millis(5);
const OWN_FAST_FOR: Duration = Duration::from_secs(1);
const OWN_POLL_SLOW: Duration = Duration::from_millis(50);

/// Who is waited for, which sets how often it is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polling {
    /// A storage (a pageserver, a safekeeper): at doubling pauses from
    /// [`POLL_MIN`] to [`POLL_MAX`]; it is usually there already, and when
    /// it is not it needs its own time.
    Storage,
    /// Our own Postgres, which a start or a promote waits on (its replay
    /// of a target, the end of its recovery, a quorum in its
    /// `pg_stat_replication`): each usually comes within milliseconds to
    /// tens of milliseconds, and the question is a local one. A doubling
    /// pause made the catch-up wait 100 ms and more past its target, and a
    /// 50 ms quorum poll cost a start 25 ms on average.
    Own,
}

impl Polling {
    /// The pauses of a wait that began at `started`.
    pub fn pace(self, started: tokio::time::Instant) -> Pace {
        match self {
            Self::Storage => Pace::new(started, POLL_MIN, POLL_MIN, POLL_MAX),
            Self::Own => Pace::new(started, OWN_POLL_FAST, OWN_FAST_FOR, OWN_POLL_SLOW),
        }
    }
}

/// The source did not reach the LSN in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error(
        "the storage {source_shown} has replayed WAL up to {reached} but the commit LSN is {target}; it did not catch up within {within:?}; check that it receives WAL from the safekeepers"
    )]
    Behind {
        source_shown: String,
        reached: Lsn,
        target: Lsn,
        within: Duration,
    },
    #[error(
        "cannot ask the storage {source_shown} for its WAL position (waiting for the commit LSN {target}) within {within:?}: {last}"
    )]
    Unreachable {
        source_shown: String,
        target: Lsn,
        within: Duration,
        last: String,
    },
}

/// Waits until `source` has replayed up to `target`, at most `within` on the
/// Env clock, asking as `polling` says; returns the position it reached.
pub async fn wait_for_lsn<E: Env>(
    env: &E,
    source: &Endpoint,
    target: Lsn,
    within: Duration,
    polling: Polling,
) -> Result<Lsn, WaitError> {
    wait_for_lsn_held(env, source, None, target, within, polling)
        .await
        .map(|(_, p)| p.replayed)
}

/// [`wait_for_lsn`] on one session (`session` when given, one open on
/// `source`), kept open between questions (a new session is a backend fork
/// and an authentication; it is opened again only when the last one
/// failed), and returned with the position for what follows on it (the
/// promotion of a caught-up standby).
pub async fn wait_for_lsn_held<E: Env>(
    env: &E,
    source: &Endpoint,
    session: Option<OpenSession>,
    target: Lsn,
    within: Duration,
    polling: Polling,
) -> Result<(OpenSession, WalPosition), WaitError> {
    let deadline = env.now() + within;
    let mut pace = polling.pace(env.now());
    let mut reached = None;
    let mut last = String::from("no answer yet");
    let mut held: Option<OpenSession> = session;
    loop {
        let left = deadline.saturating_duration_since(env.now());
        let ask = ASK_TIMEOUT.min(left.max(Duration::from_millis(1)));
        let answer = async {
            let session = match held.take() {
                Some(s) => s,
                None => source.open(env, ask).await?,
            };
            let row = session.first_row(env, POSITION_SQL, ask).await?;
            let position = position_of(&row, session.addr())?;
            Ok::<_, SessionError>((session, position))
        };
        match answer.await {
            Ok((session, p)) if p.replayed >= target => return Ok((session, p)),
            Ok((session, p)) => {
                reached = Some(p.replayed);
                held = Some(session);
            }
            Err(e) => last = e.to_string(),
        }
        let now = env.now();
        if now >= deadline {
            return Err(match reached {
                Some(reached) => WaitError::Behind {
                    source_shown: source.shown.clone(),
                    reached,
                    target,
                    within,
                },
                None => WaitError::Unreachable {
                    source_shown: source.shown.clone(),
                    target,
                    within,
                    last,
                },
            });
        }
        env.sleep(pace.next(now).min(deadline - now)).await;
    }
}
