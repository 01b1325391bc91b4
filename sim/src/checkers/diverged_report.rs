//! `/status` tells the storage which safekeeper to re-clone: one
//! `diverged` (its WAL left the compute's history, so it can never follow,
//! and compute_ctl never rewinds it). So the report must be true both
//! ways, against the model's WAL:
//! - a safekeeper reported `diverged` can indeed not follow (a false
//!   report makes the storage re-clone a good one);
//! - when a start fails without a quorum (every absent safekeeper is then
//!   asked why), each one that cannot follow is reported `diverged`, not
//!   `catching_up` (else the storage waits for a catch-up that never
//!   comes, and the next start fails the same way).
//!
//! A report made just before the storage re-cloned that safekeeper is not
//! judged: the compute asked it before the re-clone.

use std::collections::BTreeMap;

use super::Checker;
use crate::events::Event;

/// How long after a re-clone a report may still describe the WAL before
/// it (a question to a safekeeper is bounded by compute_ctl's `ASK`).
const ASKED_BEFORE_RECLONE_US: u64 = 3_000_000;

#[derive(Default)]
pub struct DivergedReportedTruly {
    /// When each safekeeper was last re-cloned.
    recloned_at: BTreeMap<String, u64>,
}

impl Checker for DivergedReportedTruly {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::SafekeeperRecloned { name, .. } => {
                self.recloned_at.insert(name.clone(), t_us);
            }
            Event::SafekeeperReported {
                boot,
                name,
                state,
                follows,
                at_failure,
            } => {
                let just_recloned = self
                    .recloned_at
                    .get(name)
                    .is_some_and(|at| t_us.saturating_sub(*at) < ASKED_BEFORE_RECLONE_US);
                if just_recloned {
                    return;
                }
                if state == "diverged" && *follows {
                    out.push(format!(
                        "boot {boot}'s /status reported {name} diverged, yet its WAL is on the compute's history: the storage would re-clone a safekeeper that can follow"
                    ));
                }
                if *at_failure && state == "catching_up" && !*follows {
                    out.push(format!(
                        "boot {boot} failed without a quorum and reported {name} catching_up, yet its WAL left the compute's history: it never catches up, and nothing tells the storage to re-clone it"
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(state: &str, follows: bool, at_failure: bool) -> Event {
        Event::SafekeeperReported {
            boot: 2,
            name: "sk3".into(),
            state: state.into(),
            follows,
            at_failure,
        }
    }

    #[test]
    fn a_report_is_judged_against_the_model_both_ways() {
        let mut c = DivergedReportedTruly::default();
        let mut out = Vec::new();
        c.on_event(1, &reported("diverged", false, false), &mut out);
        c.on_event(2, &reported("catching_up", true, true), &mut out);
        // While a start waits, an absent safekeeper is catching_up unasked.
        c.on_event(3, &reported("catching_up", false, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(4, &reported("diverged", true, false), &mut out);
        c.on_event(5, &reported("catching_up", false, true), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("reported sk3 diverged"), "{}", out[0]);
        assert!(out[1].contains("never catches up"), "{}", out[1]);
    }

    #[test]
    fn a_report_asked_before_a_reclone_is_not_judged() {
        let mut c = DivergedReportedTruly::default();
        let mut out = Vec::new();
        let recloned = Event::SafekeeperRecloned {
            name: "sk3".into(),
            lsn: 1,
            chain: 1,
            ids: vec![],
        };
        c.on_event(10, &recloned, &mut out);
        c.on_event(20, &reported("diverged", true, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(
            10 + ASKED_BEFORE_RECLONE_US,
            &reported("diverged", true, false),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
