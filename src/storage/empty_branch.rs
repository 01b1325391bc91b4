//! A timeline that a dead primary promoted onto and whose history file the
//! safekeepers fetched, but whose WAL never reached them (it died at once,
//! in its quorum wait): an empty branch. Fetching the history file made it
//! those safekeepers' recovery target, so they can only follow a timeline
//! whose history holds it. A new primary that forked beside it, from its
//! parent, would never get a quorum ("new timeline N is not a child of
//! ..."). So the new primary joins the empty branch when it can: the
//! branch's history file goes into its `pg_wal` before recovery, recovery
//! targets that timeline, and the promotion forks from it.
//!
//! It can when the branch forks from the timeline the new primary catches
//! up on exactly at the catch-up target: everything replayed is then on
//! the branch's history, and the branch holds nothing past it. A branch
//! that forks earlier holds a history the new primary's WAL left; one
//! that forks later needs WAL no reachable safekeeper holds. Either way
//! its safekeepers cannot follow (the storage's to re-clone), and the new
//! primary forks past it as before.
//!
//! Once promoted, the new primary also needs a WAL segment file for each
//! empty timeline it joined ([`fill_empty_timelines`]). A walsender that
//! streams a timeline of its history reads the segment where that
//! timeline ends from the file of the *next* timeline of its history (the
//! one that a promotion makes by copying the old segment). An empty
//! timeline never had a primary to make that file, so a safekeeper that
//! lags below the fork could never catch up: "requested WAL segment
//! 00000003…05 has already been removed", on real Postgres 15.
//!
//! A safekeeper has the same gap: it streamed straight onto the new
//! timeline, so it holds no file of the empty one either, and a base
//! backup of it that starts on the old timeline (its last restartpoint,
//! before the fork) fails the same way (the crash suite's clone of a
//! safekeeper for a move, on real Postgres 15). So once a quorum streams,
//! the start has each safekeeper make a restartpoint on the new timeline
//! ([`restart_past_fork`]).

use std::path::Path;

use std::time::Duration;

use futures::future::join_all;

use super::{
    Lsn, OpenSession, Polling, Safekeeper, history_file_name, reserve_below, wait_for_lsn,
};
use crate::env::Env;

/// The `(parent timeline, switch LSN)` lines of a history file.
pub fn parse_history(content: &str) -> Vec<(u32, Lsn)> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let lsn = f.next()?.parse().ok()?;
            Some((tli, lsn))
        })
        .collect()
}

/// The timeline a safekeeper's WAL is on at its `flushed` LSN: its newest
/// segment's timeline (`segment`), unless its history (the newest history
/// file's `content`, whose timeline is `newest`) says that timeline starts
/// at or past `flushed`. A standby opens the new timeline's segment file as
/// soon as it starts to stream it (from the segment's start, copying the
/// old timeline's WAL into it), so the file's name alone can claim a
/// timeline it holds no WAL of; so can a flushed LSN exactly at the switch
/// (seen on Postgres 15, the crash suite's `start.quorum` cell: ranked on
/// the empty timeline, that safekeeper hid the branch to join).
pub fn timeline_at(segment: u32, newest: Option<&(u32, String)>, flushed: Lsn) -> u32 {
    let Some((tli, content)) = newest else {
        return segment;
    };
    // Each line ends its timeline at the switch; the last goes on to `tli`.
    let lines = parse_history(content);
    let on = lines
        .iter()
        .find(|(_, switch)| *switch >= flushed)
        .map_or(*tli, |(parent, _)| *parent);
    segment.min(on)
}

/// The empty branch to join, if any: of the newest history files the
/// safekeepers hold (`(timeline, content)`), the newest timeline past
/// `replaying` (the catch-up source's timeline) whose history leaves
/// `replaying` exactly at `target`, with every timeline after it empty
/// (each switch at `target`). A branch that leaves later is out of reach:
/// no reachable safekeeper holds the WAL up to its fork, and joining it
/// would make a history whose timelines end before they begin (Postgres
/// writes the promotion's line as "branch, end of our WAL").
pub fn branch_to_join(
    newest: &[Option<(u32, String)>],
    replaying: u32,
    target: Lsn,
) -> Option<(u32, String)> {
    newest
        .iter()
        .flatten()
        .filter(|(t, _)| *t > replaying)
        .filter(|(_, content)| {
            let lines = parse_history(content);
            lines
                .iter()
                .position(|(parent, _)| *parent == replaying)
                .is_some_and(|at| lines[at..].iter().all(|(_, switch)| *switch == target))
        })
        .max_by_key(|(t, _)| *t)
        .cloned()
}

/// The empty timelines the new primary's history holds once it joined
/// `branch` while replaying timeline `replaying`: the branch and every
/// timeline between `replaying` and it that the branch's history names.
/// Each begins and ends where the new primary forks.
pub fn empty_timelines(branch: &(u32, String), replaying: u32) -> Vec<u32> {
    let mut empty: Vec<u32> = parse_history(&branch.1)
        .into_iter()
        .map(|(parent, _)| parent)
        .filter(|t| *t > replaying && *t < branch.0)
        .collect();
    empty.push(branch.0);
    empty
}

/// The name of the segment file `name` (a WAL segment's, 24 hex digits)
/// on timeline `t`.
fn on_timeline(name: &str, t: u32) -> Option<String> {
    let segment = name.get(8..).filter(|s| s.len() == 16)?;
    Some(format!("{t:08X}{segment}"))
}

/// Once our own Postgres (`session`, PGDATA `pgdata`) promoted at `fork`
/// after joining an empty branch: a copy of its new timeline's first
/// segment (the old timeline's up to `fork`, which the promotion copied)
/// under the name of each `empty` timeline, mode 0600 and owned by the
/// Postgres user, as Postgres' own.
/// Without one, a walsender cannot serve the timeline before it to a
/// safekeeper below `fork`. A fork at a segment boundary needs none.
pub async fn fill_empty_timelines<E: Env>(
    env: &E,
    pgdata: &Path,
    session: &OpenSession,
    fork: Lsn,
    empty: &[u32],
    within: Duration,
) -> Result<(), String> {
    if empty.is_empty() {
        return Ok(());
    }
    // `pg_walfile_name` names the segment that holds the byte before `fork`.
    let row = session
        .first_row(env, &walfile_name_sql(fork), within)
        .await
        .map_err(|e| e.to_string())?;
    let name = super::column(&row, 0)
        .filter(|n| n.len() == 24)
        .ok_or_else(|| format!("pg_walfile_name('{fork}') answered {row:?}"))?
        .to_string();
    let wal = pgdata.join("pg_wal");
    let copy = match env.read(&wal.join(&name)).await {
        Ok(bytes) => bytes,
        // The new timeline starts a fresh segment: the old one ends at
        // `fork` in its own file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading {name}: {e}")),
    };
    let owner = env
        .postgres_identity()
        .map_err(|e| format!("looking up the Postgres user: {e}"))?;
    for t in empty {
        let Some(target) = on_timeline(&name, *t) else {
            continue;
        };
        let path = wal.join(&target);
        if env.exists(&path).await {
            continue;
        }
        env.write_atomic(&path, &copy)
            .await
            .map_err(|e| format!("writing {target}: {e}"))?;
        // WAL holds the data: as private as Postgres' own segment files.
        env.set_mode(&path, 0o600)
            .await
            .map_err(|e| format!("making {target} private: {e}"))?;
        if let Some(who) = owner {
            env.chown_recursive(&path, who)
                .await
                .map_err(|e| format!("giving {target} to the Postgres user: {e}"))?;
        }
    }
    Ok(())
}

/// On our own Postgres, which joined an empty branch, right after its
/// promotion and before any safekeeper streams from it: a `CHECKPOINT`,
/// and how far the WAL is flushed past it. The first WAL a safekeeper gets
/// from it then carries a checkpoint record on the new timeline, and a
/// restartpoint there (a `--checkpoint=fast` base backup makes its own) is
/// past the fork even when this primary dies before [`restart_past_fork`]
/// runs; without it, a primary killed between the announce and its end of
/// recovery checkpoint reaching the safekeepers left them with WAL of the
/// new timeline and no restartpoint past the empty one.
pub async fn checkpoint_past_fork<E: Env>(
    env: &E,
    session: &OpenSession,
    within: Duration,
) -> Result<Lsn, String> {
    session
        .first_row(env, "CHECKPOINT", within)
        .await
        .map_err(|e| format!("CHECKPOINT on the new primary: {e}"))?;
    let row = session
        .first_row(env, "SELECT pg_current_wal_flush_lsn()::text", within)
        .await
        .map_err(|e| format!("the new primary's flushed LSN after its CHECKPOINT: {e}"))?;
    super::column(&row, 0)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("the new primary answered {row:?} for its flushed LSN"))
}

/// Once a quorum streams from our own Postgres (which joined an empty
/// branch and made a checkpoint, flushed up to `checkpointed`:
/// [`checkpoint_past_fork`]): on each of `safekeepers`, once it replayed
/// that checkpoint, a `CHECKPOINT` (a restartpoint there, at that record:
/// on the new timeline, past the fork). A base backup of the safekeeper
/// then starts past the empty timeline. Each step within `within`; the
/// safekeepers that failed are named in the error.
pub async fn restart_past_fork<E: Env>(
    env: &E,
    checkpointed: Lsn,
    safekeepers: &[Safekeeper],
    within: Duration,
) -> Result<(), String> {
    let each = safekeepers.iter().map(|sk| async move {
        wait_for_lsn(env, &sk.endpoint, checkpointed, within, Polling::Storage)
            .await
            .map_err(|e| e.to_string())?;
        sk.endpoint
            .execute(env, &["CHECKPOINT"], within)
            .await
            .map_err(|e| e.to_string())
    });
    let failed: Vec<String> = safekeepers
        .iter()
        .zip(join_all(each).await)
        .filter_map(|(sk, r)| r.err().map(|e| format!("{}: {e}", sk.endpoint.shown)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// The statement that names the WAL segment holding the byte before `lsn`
/// on the current timeline.
pub fn walfile_name_sql(lsn: Lsn) -> String {
    format!("SELECT pg_walfile_name('{lsn}')")
}

/// Writes the branch's history file into `pgdata`'s `pg_wal`, with empty
/// history files for the numbers below it that it lacks (recovery targets
/// the newest of an unbroken run of them), before Postgres starts.
pub async fn join_branch<E: Env>(
    env: &E,
    pgdata: &Path,
    branch: &(u32, String),
) -> std::io::Result<()> {
    reserve_below(env, pgdata, 1, branch.0).await?;
    env.write_atomic(
        &pgdata.join("pg_wal").join(history_file_name(branch.0)),
        branch.1.as_bytes(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const TL3: &str = "1\t0/5000000\tno recovery target specified\n\n2\t0/58404B0\tno recovery target specified\n";

    #[test]
    fn only_a_branch_forking_exactly_at_the_target_is_joined() {
        let newest = [Some((3, TL3.to_string())), None, Some((2, String::new()))];
        let at: Lsn = "0/58404B0".parse().unwrap();
        assert_eq!(branch_to_join(&newest, 2, at).map(|b| b.0), Some(3));
        let past: Lsn = "0/58404C0".parse().unwrap();
        assert_eq!(
            branch_to_join(&newest, 2, past),
            None,
            "it forked below the target"
        );
        let before: Lsn = "0/5840400".parse().unwrap();
        assert_eq!(
            branch_to_join(&newest, 2, before),
            None,
            "it forked past the target: its fork needs WAL no reachable safekeeper holds"
        );
        let tl4 = format!("{TL3}3\t0/5840600\tno recovery target specified\n");
        assert_eq!(
            branch_to_join(&[Some((4, tl4))], 2, at),
            None,
            "timeline 3 holds WAL past the target"
        );
        assert_eq!(
            branch_to_join(&newest, 1, at),
            None,
            "it does not fork from timeline 1 there"
        );
        assert_eq!(
            branch_to_join(&newest, 3, at),
            None,
            "not newer than the source's"
        );
    }

    #[test]
    fn a_segment_file_of_a_timeline_past_the_flush_lsn_does_not_count() {
        let newest = (3, TL3.to_string());
        let before: Lsn = "0/5000100".parse().unwrap();
        assert_eq!(timeline_at(3, Some(&newest), before), 2);
        let first_switch: Lsn = "0/5000000".parse().unwrap();
        assert_eq!(
            timeline_at(3, Some(&newest), first_switch),
            1,
            "no WAL of timeline 2 yet"
        );
        let after: Lsn = "0/5900000".parse().unwrap();
        assert_eq!(timeline_at(3, Some(&newest), after), 3);
        let at_the_switch: Lsn = "0/58404B0".parse().unwrap();
        assert_eq!(
            timeline_at(3, Some(&newest), at_the_switch),
            2,
            "no WAL of timeline 3 yet"
        );
        assert_eq!(timeline_at(2, None, after), 2);
    }

    #[test]
    fn the_branch_and_the_timelines_between_are_empty() {
        assert_eq!(empty_timelines(&(3, TL3.to_string()), 2), vec![3]);
        let tl5 = format!("{TL3}3\t0/58404B0\tno recovery target specified\n");
        assert_eq!(empty_timelines(&(5, tl5), 2), vec![3, 5]);
        assert_eq!(
            on_timeline("000000040000000000000005", 3).as_deref(),
            Some("000000030000000000000005")
        );
        assert_eq!(on_timeline("00000004.history", 3), None);
    }

    #[test]
    fn history_lines_are_parsed_as_postgres_writes_them() {
        assert_eq!(
            parse_history(TL3),
            vec![
                (1, "0/5000000".parse().unwrap()),
                (2, "0/58404B0".parse().unwrap())
            ]
        );
        assert!(parse_history("").is_empty());
    }
}
