//! Before a replica's `pg_promote()`: is a safekeeper's WAL on a timeline
//! newer than the replica's own?
//!
//! Postgres promotes onto the timeline after the newest one whose history
//! file it holds. A replica that followed a safekeeper which never saw a
//! later timeline (it was cut off while the old primary ran on it) would
//! promote onto that timeline's number again, and the safekeepers that hold
//! the old primary's WAL of that number (unacknowledged WAL past the fork
//! included) would take the new primary's WAL after it: two histories
//! under one timeline, which nothing downstream can tell apart. So the
//! promote is refused while a reachable safekeeper is on a newer timeline:
//! the replica stays a replica and the answer names that safekeeper, to
//! follow before promoting again. A safekeeper that does not answer cannot
//! be judged (the quorum's own checks still hold).
//!
//! The same survey says which safekeeper on the replica's timeline holds
//! WAL past what the replica replayed: the promote waits for the replica to
//! replay it, as a durable start catches up to the most advanced
//! safekeeper, and refuses when it cannot.

use super::catchup::{known_of, timeline_of};
use super::{Endpoint, Lsn, Safekeeper};
use crate::env::Env;

/// A safekeeper whose WAL follows a newer timeline than the replica's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerTimeline {
    /// Its name (as in `synchronous_standby_names`).
    pub safekeeper: String,
    pub timeline: u32,
    /// The replica's own.
    pub own: u32,
}

impl std::fmt::Display for NewerTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "safekeeper {} holds WAL of timeline {}, newer than this replica's timeline {}: promoting now would reuse a timeline number the old primary wrote on; point the replica at {} (its upstream), let it follow, then send the promote again",
            self.safekeeper, self.timeline, self.own, self.safekeeper
        )
    }
}

/// What a replica about to promote learns of the timelines around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSurvey {
    /// The first safekeeper on a timeline newer than the replica's; `None`
    /// when there is none, or when the replica's own timeline cannot be
    /// read (then nothing can be compared).
    pub newer: Option<NewerTimeline>,
    /// The newest timeline each safekeeper knows of (`None`: it did not
    /// say), for the claim ([`super::next_timeline`]).
    pub known: Vec<Option<u32>>,
    /// The newest the replica itself knows of.
    pub own_known: Option<u32>,
    /// The safekeeper on the replica's own timeline whose WAL reaches
    /// furthest past what the replica has replayed (its name, that LSN):
    /// an acknowledged commit can be there, also past the old primary's
    /// `/terminate` LSN when a safekeeper of its quorum was cut off then.
    pub ahead: Option<(String, Lsn)>,
}

/// Asks the replica (`own`) and each of `safekeepers`, in parallel, which
/// timelines they follow and know of.
pub async fn survey_timelines<E: Env>(
    env: &E,
    own: &Endpoint,
    safekeepers: &[Safekeeper],
) -> TimelineSurvey {
    // One session each: its position, then its timelines.
    let ask = async |ep: &Endpoint| {
        let rows = ep
            .first_rows(
                env,
                &[super::POSITION_SQL, super::NEWEST_TIMELINE_SQL],
                super::catchup::PROBE_TIMEOUT,
            )
            .await;
        let position = rows
            .as_ref()
            .ok()
            .and_then(|r| r.first())
            .and_then(|row| super::safekeepers::position_of(row, &ep.addr()).ok());
        let answer = rows.map(|mut r| r.pop().unwrap_or_default());
        (timeline_of(ep, &answer), known_of(&answer), position)
    };
    let (mine, theirs) = futures::join!(
        ask(own),
        futures::future::join_all(safekeepers.iter().map(|sk| ask(&sk.endpoint)))
    );
    let timelines: Vec<u32> = theirs.iter().map(|(t, _, _)| *t).collect();
    let ahead = match (mine.0, mine.2) {
        (0, _) | (_, None) => None,
        (tli, Some(p)) => safekeepers
            .iter()
            .zip(&theirs)
            .filter_map(|(sk, (t, _, pos))| {
                let flushed = pos.as_ref()?.flushed;
                (*t == tli && flushed > p.replayed).then(|| (sk.name.clone(), flushed))
            })
            .max_by_key(|(_, l)| *l),
    };
    TimelineSurvey {
        newer: (mine.0 != 0)
            .then(|| first_newer(mine.0, safekeepers, &timelines))
            .flatten(),
        known: theirs.iter().map(|(_, k, _)| *k).collect(),
        own_known: mine.1,
        ahead,
    }
}

fn first_newer(own: u32, safekeepers: &[Safekeeper], theirs: &[u32]) -> Option<NewerTimeline> {
    safekeepers
        .iter()
        .zip(theirs)
        .filter(|(_, t)| **t > own)
        .max_by_key(|(_, t)| **t)
        .map(|(sk, t)| NewerTimeline {
            safekeeper: sk.name.clone(),
            timeline: *t,
            own,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sks(n: usize) -> Vec<Safekeeper> {
        (1..=n)
            .map(|i| Safekeeper {
                name: format!("sk{i}"),
                endpoint: Endpoint::parse(&format!("host=sk{i} port=5432"), "cloud_admin").unwrap(),
            })
            .collect()
    }

    #[test]
    fn the_safekeeper_on_the_newest_timeline_is_named_and_silent_or_older_ones_are_not() {
        let s = sks(3);
        // sk1 never saw timeline 2, sk2 did not answer (0), sk3 holds it.
        let newer = first_newer(1, &s, &[1, 0, 2]).expect("sk3 is newer");
        assert_eq!(newer.safekeeper, "sk3");
        assert_eq!((newer.timeline, newer.own), (2, 1));
        assert!(newer.to_string().contains("point the replica at sk3"));
        // The replica on the newest timeline: nothing to refuse.
        assert_eq!(first_newer(2, &s, &[1, 0, 2]), None);
        // Two newer: the newest is the one to follow.
        assert_eq!(first_newer(1, &s, &[2, 3, 2]).unwrap().safekeeper, "sk2");
    }
}
