//! Waiting for the source of a base backup to reach an LSN (the commit LSN):
//! a base backup of it then holds everything committed.

use std::time::Duration;

use super::endpoint::OpenSession;
use super::safekeepers::position_of;
use super::{Endpoint, Lsn, POSITION_SQL, SessionError, WalPosition};
use crate::env::Env;

/// One position query's deadline.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest pause between two questions.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

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
/// Env clock; returns the position it reached.
pub async fn wait_for_lsn<E: Env>(
    env: &E,
    source: &Endpoint,
    target: Lsn,
    within: Duration,
) -> Result<Lsn, WaitError> {
    wait_for_lsn_held(env, source, None, target, within)
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
) -> Result<(OpenSession, WalPosition), WaitError> {
    let deadline = env.now() + within;
    let mut delay = POLL_MIN;
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
        env.sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(POLL_MAX);
    }
}
