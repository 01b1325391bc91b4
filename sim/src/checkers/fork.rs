//! No reachable safekeeper is left diverged by a start: every safekeeper
//! that answered the sync of a primary's start (so it was reachable) had
//! flushed no WAL past the point where the new primary's timeline forked;
//! WAL past it could never be followed (ARCHITECTURE.md, "A primary with
//! safekeepers").

use std::collections::BTreeMap;

use super::Checker;
use crate::events::Event;
use compute_ctl::storage::Lsn;

#[derive(Default)]
pub struct NoneLeftPastTheFork {
    /// Per boot not yet started: the highest LSN each safekeeper answered.
    answered: BTreeMap<u64, BTreeMap<String, u64>>,
    started: std::collections::BTreeSet<u64>,
}

impl Checker for NoneLeftPastTheFork {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::PositionAnswered { name, boot, lsn } if !self.started.contains(boot) => {
                let e = self
                    .answered
                    .entry(*boot)
                    .or_default()
                    .entry(name.clone())
                    .or_default();
                *e = (*e).max(*lsn);
            }
            Event::ComputeStarted {
                boot,
                fork_lsn,
                timeline,
                ..
            } => {
                self.started.insert(*boot);
                for (name, lsn) in self.answered.remove(boot).unwrap_or_default() {
                    if lsn > *fork_lsn {
                        out.push(format!(
                            "a start left a reachable safekeeper diverged: {name} answered the sync at {}, past {}, where timeline {timeline} of boot {boot} forked",
                            Lsn(lsn),
                            Lsn(*fork_lsn)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_past_the_fork_is_reported_and_one_after_the_start_is_not() {
        let mut c = NoneLeftPastTheFork::default();
        let mut out = Vec::new();
        let ans = |name: &str, lsn| Event::PositionAnswered {
            name: name.into(),
            boot: 1,
            lsn,
        };
        c.on_event(0, &ans("sk1", 10), &mut out);
        c.on_event(0, &ans("sk2", 30), &mut out);
        let started = Event::ComputeStarted {
            host: "compute".into(),
            boot: 1,
            timeline: 2,
            fork_lsn: 20,
            safekeepers: 3,
        };
        c.on_event(1, &started, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("sk2 answered the sync at 0/1E"));
        c.on_event(2, &ans("sk3", 99), &mut out);
        assert_eq!(out.len(), 1);
    }
}
