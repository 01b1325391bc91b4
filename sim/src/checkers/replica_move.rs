//! A replica follows its moves (the replica scenarios): once a notify
//! that moved it to another storage host was answered 200, its WAL
//! receiver streams from that host within the control plane's bound
//! ([`Event::ReplicaMoveWaited`]), and from a promoted storage on the
//! timeline the promotion started (2). Excused only where the fault
//! ledger says a fault can explain a late stream
//! ([`FaultLedger::explains_late_stream`]) or the compute's supervisor
//! is gone.

use std::collections::{BTreeMap, BTreeSet};

use super::Checker;
use super::window::ledger_sees;
use crate::events::{Event, Request};
use crate::ledger::FaultLedger;
use crate::names::STORAGE_PORT;

/// The timeline a promoted storage writes on.
const PROMOTED_TIMELINE: u32 = 2;

#[derive(Default)]
pub struct ReplicaFollowsMove {
    ledger: FaultLedger,
    /// Notifies in flight: when each was sent.
    notifies: BTreeMap<u64, u64>,
    /// When the last notify answered 200 was sent.
    last_move_sent: u64,
    /// Storage hosts promoted.
    promoted: BTreeSet<String>,
    /// The compute's supervisor exited and its host has not booted since.
    exited: bool,
}

impl Checker for ReplicaFollowsMove {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::RequestSent {
                req,
                kind: Request::Notify,
                ..
            } => {
                self.notifies.insert(*req, t_us);
            }
            Event::Answered {
                req,
                kind: Request::Notify,
                code,
                ..
            } => {
                let sent = self.notifies.remove(req);
                if let (Some(sent), Some(200)) = (sent, code) {
                    self.last_move_sent = sent;
                }
            }
            Event::StoragePromoted { host } => {
                self.promoted.insert(host.clone());
            }
            Event::SupervisorExit { .. } => self.exited = true,
            Event::Boot { .. } => self.exited = false,
            Event::ReplicaMoveWaited {
                to,
                answered_us,
                bound_ms: _,
                sender,
                timeline,
            } => {
                let excused = self.exited
                    || self
                        .ledger
                        .explains_late_stream(to, self.last_move_sent, *answered_us, t_us)
                        .is_some();
                if excused {
                    return;
                }
                let want = format!("{to}:{STORAGE_PORT}");
                if sender.as_deref() != Some(want.as_str()) {
                    out.push(format!(
                        "{} ms after the move to {want} the replica streams from {sender:?}",
                        t_us.saturating_sub(*answered_us) / 1000
                    ));
                } else if self.promoted.contains(to) && *timeline != PROMOTED_TIMELINE {
                    out.push(format!(
                        "after the failover the replica is on timeline {timeline}, not {PROMOTED_TIMELINE}"
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
    use crate::faults::FaultKind;
    use crate::names::{STORAGE, STORAGE2};

    fn notify(c: &mut ReplicaFollowsMove, req: u64, sent: u64, answered: u64) {
        let mut out = Vec::new();
        let sent_ev = Event::RequestSent {
            req,
            kind: Request::Notify,
            path: "/configure".into(),
            op: req,
            seen: None,
        };
        c.on_event(sent, &sent_ev, &mut out);
        let answer = Event::Answered {
            req,
            kind: Request::Notify,
            path: "/configure".into(),
            op: req,
            outcome: "200".into(),
            code: Some(200),
            ms: (answered - sent) / 1000,
            seen: None,
        };
        c.on_event(answered, &answer, &mut out);
        assert!(out.is_empty());
    }

    fn waited(to: &str, answered_us: u64, sender: Option<&str>, timeline: u32) -> Event {
        Event::ReplicaMoveWaited {
            to: to.into(),
            answered_us,
            bound_ms: 3_000,
            sender: sender.map(|h| format!("{h}:{STORAGE_PORT}")),
            timeline,
        }
    }

    #[test]
    fn a_replica_still_on_its_old_storage_after_the_bound_is_reported() {
        let mut c = ReplicaFollowsMove::default();
        let mut out = Vec::new();
        notify(&mut c, 1, 100_000, 200_000);
        c.on_event(
            3_220_000,
            &waited(STORAGE2, 200_000, Some(STORAGE), 1),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("3020 ms after the move to storage2:6400"));
        assert!(out[0].contains("Some(\"storage:6400\")"));
    }

    #[test]
    fn the_scenario_cutting_the_old_storage_excuses_nothing_but_a_promotion_is_followed() {
        let mut c = ReplicaFollowsMove::default();
        let mut out = Vec::new();
        // The failover: storage cut off (by the scenario), storage2 promoted.
        let cut = |start, window_ms| Event::Fault {
            kind: FaultKind::PartitionStorage,
            start,
            window_ms,
        };
        c.on_event(50_000, &cut(true, (50, None)), &mut out);
        c.on_event(
            60_000,
            &Event::StoragePromoted {
                host: STORAGE2.into(),
            },
            &mut out,
        );
        notify(&mut c, 1, 100_000, 200_000);
        // Streaming from storage2 but still on timeline 1.
        c.on_event(
            300_000,
            &waited(STORAGE2, 200_000, Some(STORAGE2), 1),
            &mut out,
        );
        assert_eq!(
            out,
            ["after the failover the replica is on timeline 1, not 2"]
        );
        out.clear();
        c.on_event(
            310_000,
            &waited(STORAGE2, 200_000, Some(STORAGE2), 2),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // A stream from nowhere while storage itself is cut off: excused
        // for a move to storage, not for one to storage2.
        c.on_event(3_300_000, &waited(STORAGE, 200_000, None, 2), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(3_300_000, &waited(STORAGE2, 200_000, None, 2), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn a_crash_during_the_move_or_a_gone_supervisor_excuses_a_late_stream() {
        let mut c = ReplicaFollowsMove::default();
        let mut out = Vec::new();
        let crash = Event::Fault {
            kind: FaultKind::HostCrash,
            start: true,
            window_ms: (150, Some(400)),
        };
        c.on_event(150_000, &crash, &mut out);
        notify(&mut c, 1, 100_000, 200_000);
        c.on_event(3_300_000, &waited(STORAGE2, 200_000, None, 1), &mut out);
        assert!(out.is_empty(), "{out:?}");

        let mut c = ReplicaFollowsMove::default();
        let exit = Event::SupervisorExit {
            status: compute_ctl::state::ComputeStatus::Failed,
            reason: "gone".into(),
        };
        c.on_event(150_000, &exit, &mut out);
        notify(&mut c, 1, 100_000, 200_000);
        c.on_event(3_300_000, &waited(STORAGE2, 200_000, None, 1), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
