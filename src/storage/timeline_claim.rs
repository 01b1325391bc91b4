//! A new primary's timeline number is claimed on a majority of the
//! safekeepers before it promotes, so that no two primaries ever write
//! WAL under one timeline number.
//!
//! `pg_promote()` picks the timeline after the newest one whose history
//! file this Postgres holds. A new primary learns history files only from
//! the WAL it replays, so it can miss the timeline of a primary that wrote
//! WAL elsewhere: one that died before its quorum streamed (only one
//! safekeeper got its WAL), or one whose timeline a majority knows only by
//! its history file (a cascading standby reports the timeline it replays,
//! not the history files it holds). It then promotes onto that number
//! again, and a safekeeper that holds the other primary's WAL of that
//! number (past our fork) takes ours after it: two histories under one
//! timeline, which Postgres cannot tell apart and the quorum then counts.
//!
//! So a durable start:
//! 1. reads, with the sync, the newest timeline each safekeeper knows of
//!    (its WAL's, its newest history file's, and the one claimed on it:
//!    [`super::NEWEST_TIMELINE_SQL`]); a majority must say;
//! 2. claims the next number on each safekeeper that answered
//!    (`ALTER SYSTEM SET compute_ctl.claimed_timeline`, which survives a
//!    restart of the safekeeper), while the base backup runs; a majority
//!    must take it. Any later start's majority overlaps this one, so it
//!    sees the claim and goes past it, also when this start dies before
//!    its quorum ever streams. A claim is read from the safekeeper's
//!    `postgresql.auto.conf` ([`CLAIM_LOOK_SQL`]), where `ALTER SYSTEM`
//!    puts it before it returns, so no reload is sent: a SIGHUP would have
//!    every process of every safekeeper re-read its config in the middle
//!    of the base backup one of them serves;
//! 3. makes its own Postgres promote onto exactly that number: empty
//!    history files for the numbers it lacks below it, above the timeline
//!    its recovery targets ([`reserve_below`]),
//!    written just before `pg_promote()` (recovery ignores them: such a
//!    timeline "is not a child of" the one it replays, and the new
//!    timeline's own history copies only its real parent's), then checks
//!    the timeline it got.

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;

use super::{OpenSession, Safekeeper, majority};
use crate::env::Env;

/// The placeholder variable that holds a claim on a safekeeper.
pub const CLAIM_SETTING: &str = "compute_ctl.claimed_timeline";

/// The claim in a server's `postgresql.auto.conf` (NULL when none), as an
/// SQL expression: `ALTER SYSTEM` writes `name = 'value'` lines there.
macro_rules! claim_in_auto_conf {
    () => {
        "substring(pg_read_file('postgresql.auto.conf') \
         from 'compute_ctl\\.claimed_timeline = ''([0-9]+)''')"
    };
}
pub(super) use claim_in_auto_conf;

/// Reads the timeline claimed on a server (NULL when none).
pub const CLAIM_LOOK_SQL: &str = concat!("SELECT ", claim_in_auto_conf!());

/// Why a timeline could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "only {known} of {total} safekeepers said which timelines they know, a majority of {need} is needed to pick a timeline no other primary used; bring the safekeepers up and start again"
    )]
    TooFewKnown {
        known: usize,
        total: usize,
        need: usize,
    },
    #[error(
        "timeline {timeline} was claimed on only {claimed} of {total} safekeepers, a majority of {need} is needed (answers: {answers}); bring the safekeepers up and start again"
    )]
    TooFewClaimed {
        timeline: u32,
        claimed: usize,
        total: usize,
        need: usize,
        answers: String,
    },
}

/// The timeline a new primary claims: past every timeline known to the
/// safekeepers that answered (`known`, one per safekeeper, `None` for one
/// that did not say), which must be a majority of them.
pub fn next_timeline(known: &[Option<u32>]) -> Result<u32, ClaimError> {
    let said: Vec<u32> = known.iter().flatten().copied().collect();
    let need = majority(known.len());
    if said.len() < need {
        return Err(ClaimError::TooFewKnown {
            known: said.len(),
            total: known.len(),
            need,
        });
    }
    Ok(said.into_iter().max().unwrap_or(1).max(1) + 1)
}

/// How one safekeeper took the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Taken {
    Yes,
    /// A higher claim is already there: another start went past us.
    Higher(u32),
    Failed(String),
}

/// Claims `timeline` on each of `safekeepers` whose `known` said (in
/// parallel, each within `within`); a majority of all must take it. Where
/// `held` has a session to a safekeeper (a start's sync kept it, in the
/// same order), the claim runs on it: no new backend on the safekeeper
/// while the base backup runs. A held session that fails is replaced by a
/// new one (the claim is the same on both: it looks first).
pub async fn claim_timeline<E: Env>(
    env: &E,
    safekeepers: &[Safekeeper],
    known: &[Option<u32>],
    timeline: u32,
    within: Duration,
    held: &[Option<OpenSession>],
) -> Result<(), ClaimError> {
    let value = format!("'{timeline}'");
    let set = format!("SET {CLAIM_SETTING} = {value}");
    let alter = format!("ALTER SYSTEM SET {CLAIM_SETTING} = {value}");
    let statements = [CLAIM_LOOK_SQL, &set, &alter];
    let asks = safekeepers.iter().zip(known).enumerate().map(|(i, (sk, k))| {
        let statements = &statements;
        async move {
            if k.is_none() {
                return Taken::Failed("did not answer the sync".into());
            }
            // The look stops the claim when a higher one is there. `SET`
            // first: `ALTER SYSTEM` takes a custom variable only once the
            // session knows it.
            let mut higher = None;
            let mut go_on = |row: &[Option<String>], looking: &mut bool| {
                if !std::mem::take(looking) {
                    return true;
                }
                higher = super::column(row, 0)
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|c| *c > timeline);
                higher.is_none()
            };
            let kept = match held.get(i) {
                Some(Some(session)) => {
                    let mut looking = true;
                    let rows = session
                        .first_rows_while(env, statements, within, |r| go_on(r, &mut looking))
                        .await;
                    if let Err(e) = &rows {
                        tracing::debug!(safekeeper = %sk.endpoint.shown, error = %e, "the sync's session failed the claim; claiming on a new one");
                    }
                    rows.ok()
                }
                _ => None,
            };
            let rows = match kept {
                Some(rows) => Ok(rows),
                None => {
                    let mut looking = true;
                    sk.endpoint
                        .first_rows_while(env, statements, within, |r| go_on(r, &mut looking))
                        .await
                }
            };
            match (rows, higher) {
                (Err(e), _) => Taken::Failed(e.to_string()),
                (Ok(_), Some(c)) => Taken::Higher(c),
                (Ok(_), None) => Taken::Yes,
            }
        }
    });
    let taken = join_all(asks).await;
    let claimed = taken.iter().filter(|t| **t == Taken::Yes).count();
    let need = majority(safekeepers.len());
    if claimed >= need {
        return Ok(());
    }
    let answers = safekeepers
        .iter()
        .zip(&taken)
        .map(|(sk, t)| match t {
            Taken::Yes => format!("{}: claimed", sk.endpoint.shown),
            Taken::Higher(c) => format!(
                "{}: timeline {c} is already claimed there (another start is running or ran)",
                sk.endpoint.shown
            ),
            Taken::Failed(e) => format!("{}: {e}", sk.endpoint.shown),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(ClaimError::TooFewClaimed {
        timeline,
        claimed,
        total: safekeepers.len(),
        need,
        answers,
    })
}

/// The name of timeline `t`'s history file in `pg_wal`.
pub fn history_file_name(t: u32) -> String {
    format!("{t:08X}.history")
}

/// Makes our own Postgres (PGDATA `pgdata`, in recovery) promote onto
/// `timeline`: an empty history file for each number between `from` and
/// `timeline` (both excluded) that `pg_wal` lacks. `pg_promote()` takes the
/// number after the newest of an unbroken run of them above the timeline
/// recovery targets, so `from` is any timeline at or below that one (1 when
/// none is known): a start passes the lowest timeline a safekeeper's WAL is
/// on, and a start with no claim in between writes nothing. Written once
/// Postgres runs and just before the promotion: at start-up, recovery would
/// take the newest as its target.
pub async fn reserve_below<E: Env>(
    env: &E,
    pgdata: &Path,
    from: u32,
    timeline: u32,
) -> std::io::Result<()> {
    let wal = pgdata.join("pg_wal");
    for t in from.max(1) + 1..timeline {
        let path = wal.join(history_file_name(t));
        if !env.exists(&path).await {
            env.write_atomic(&path, b"").await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_timeline_is_past_everything_a_majority_knows() {
        assert_eq!(next_timeline(&[Some(3), Some(5), None]), Ok(6));
        assert_eq!(next_timeline(&[Some(1), Some(1), Some(1)]), Ok(2));
        assert_eq!(
            next_timeline(&[Some(9), None, None]),
            Err(ClaimError::TooFewKnown {
                known: 1,
                total: 3,
                need: 2
            })
        );
    }

    #[tokio::test]
    async fn placeholders_are_written_only_between_the_floor_and_the_claim() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).unwrap();
        std::fs::write(wal.join(history_file_name(7)), "6\t0/3000000\treal\n").unwrap();
        let env = crate::env::TokioEnv::new();
        reserve_below(&env, dir.path(), 5, 9).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&wal)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // Recovery targets timeline 5 or later: 6 and 8 make 9 the next
        // number, 7 (a real history) is kept, nothing is written below 6.
        assert_eq!(
            names,
            ["00000006.history", "00000007.history", "00000008.history"]
        );
        assert_eq!(
            std::fs::read_to_string(wal.join(history_file_name(7))).unwrap(),
            "6\t0/3000000\treal\n"
        );
        assert_eq!(
            std::fs::read_to_string(wal.join(history_file_name(6))).unwrap(),
            ""
        );
    }

    #[test]
    fn history_files_are_named_as_postgres_names_them() {
        assert_eq!(history_file_name(2), "00000002.history");
        assert_eq!(history_file_name(0x1A), "0000001A.history");
    }
}
