//! Before a replica is promoted (`POST /promote`), its commits must already
//! wait for the safekeepers' quorum: once `pg_promote()` returns, clients
//! may write at once, and a commit acknowledged without a quorum would be
//! lost with the compute.
//!
//! `synchronous_standby_names` comes with the reload of the primary's
//! `postgresql.conf`, but a backend waits for the quorum only once the
//! checkpointer has read the reload (it sets the shared flag
//! `sync_standbys_defined`). [`await_quorum_in_force`] therefore waits
//! until a new session shows the names (the postmaster has read the file
//! and signalled its children), then asks for a `CHECKPOINT` (a restartpoint
//! on a standby): the checkpointer reads a pending reload at the top of the
//! loop that serves the request, so once it returns the flag is set.

use std::time::Duration;

use super::{Endpoint, SessionError};
use crate::env::Env;

/// How often the setting is asked for while the reload is not yet seen.
const POLL: Duration = Duration::from_millis(20);
/// How long the restartpoint may take (it writes the standby's dirty buffers).
const CHECKPOINT_WITHIN: Duration = Duration::from_secs(60);

/// Why the quorum could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum QuorumNotInForce {
    #[error(
        "after the reload Postgres still shows synchronous_standby_names = {seen:?}, not {expected:?}, after {within:?}"
    )]
    NotLoaded {
        seen: String,
        expected: String,
        within: Duration,
    },
    #[error("asking our own Postgres failed: {0}")]
    Session(#[from] SessionError),
}

/// Waits (at most `within`) until `own` serves `synchronous_standby_names =
/// expected` to a new session, then makes its checkpointer read the reload
/// (see the module docs; the `CHECKPOINT` has a deadline of its own).
pub async fn await_quorum_in_force<E: Env>(
    env: &E,
    own: &Endpoint,
    expected: &str,
    within: Duration,
) -> Result<(), QuorumNotInForce> {
    let deadline = env.now() + within;
    loop {
        let left = deadline.saturating_duration_since(env.now());
        let row = own
            .query_row(
                env,
                "SHOW synchronous_standby_names",
                left.max(Duration::from_millis(100)),
            )
            .await?;
        let seen = super::column(&row, 0).unwrap_or_default().to_string();
        if seen == expected {
            break;
        }
        if env.now() >= deadline {
            return Err(QuorumNotInForce::NotLoaded {
                seen,
                expected: expected.to_string(),
                within,
            });
        }
        env.sleep(POLL).await;
    }
    own.execute(env, &["CHECKPOINT"], CHECKPOINT_WITHIN).await?;
    Ok(())
}
