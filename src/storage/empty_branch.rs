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
//! up on at or past the catch-up target: everything replayed is then on
//! the branch's history. A branch that forks earlier holds a history the
//! new primary's WAL left; its safekeepers are diverged (the storage's to
//! re-clone), and the new primary forks past it as before.

use std::path::Path;

use super::{Lsn, history_file_name, reserve_below};
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
/// past `flushed`. A standby opens the new timeline's segment file as soon
/// as it starts to stream it, so the file's name alone can claim a
/// timeline it holds no WAL of.
pub fn timeline_at(segment: u32, newest: Option<&(u32, String)>, flushed: Lsn) -> u32 {
    let Some((tli, content)) = newest else {
        return segment;
    };
    // Each line ends its timeline at the switch; the last goes on to `tli`.
    let lines = parse_history(content);
    let on = lines
        .iter()
        .find(|(_, switch)| *switch > flushed)
        .map_or(*tli, |(parent, _)| *parent);
    segment.min(on)
}

/// The empty branch to join, if any: of the newest history files the
/// safekeepers hold (`(timeline, content)`), the newest timeline past
/// `replaying` (the catch-up source's timeline) whose history forks from
/// it at or past `target`.
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
            parse_history(content)
                .iter()
                .any(|(parent, switch)| *parent == replaying && *switch >= target)
        })
        .max_by_key(|(t, _)| *t)
        .cloned()
}

/// Writes the branch's history file into `pgdata`'s `pg_wal`, with empty
/// history files for the numbers below it that it lacks (recovery targets
/// the newest of an unbroken run of them), before Postgres starts.
pub async fn join_branch<E: Env>(
    env: &E,
    pgdata: &Path,
    branch: &(u32, String),
) -> std::io::Result<()> {
    reserve_below(env, pgdata, branch.0).await?;
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
    fn a_branch_forking_at_or_past_the_target_is_joined_and_an_earlier_one_is_not() {
        let newest = [Some((3, TL3.to_string())), None, Some((2, String::new()))];
        let at: Lsn = "0/58404B0".parse().unwrap();
        assert_eq!(branch_to_join(&newest, 2, at).map(|b| b.0), Some(3));
        let past: Lsn = "0/58404C0".parse().unwrap();
        assert_eq!(
            branch_to_join(&newest, 2, past),
            None,
            "it forked below the target"
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
        let before: Lsn = "0/5000000".parse().unwrap();
        assert_eq!(timeline_at(3, Some(&newest), before), 2);
        let after: Lsn = "0/5900000".parse().unwrap();
        assert_eq!(timeline_at(3, Some(&newest), after), 3);
        assert_eq!(timeline_at(2, None, after), 2);
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
