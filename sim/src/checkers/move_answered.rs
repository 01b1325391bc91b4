//! A safekeeper move the control plane did not kill is answered 200
//! (issue 21), unless the fault ledger explains why not: the primary it
//! saw right after ([`Event::PrimarySeen`]) is Failed on something a
//! fault that fired can cause ([`FaultLedger::explains_failure`]), or a
//! network fault may have swallowed the answer
//! ([`FaultLedger::excuses_lost_request`] at its send). A stale
//! generation's refusal is `move_generation`'s to judge.

use std::collections::BTreeMap;

use compute_ctl::state::ComputeStatus;

use super::Checker;
use super::window::ledger_sees;
use crate::events::Event;
use crate::ledger::FaultLedger;

/// A move in flight: when it was sent, from which set to which.
#[derive(Debug, Clone)]
struct Sent {
    t0: u64,
    from: Vec<String>,
    to: Vec<String>,
}

#[derive(Default)]
pub struct MoveAnsweredOrExplained {
    ledger: FaultLedger,
    /// The generation the control plane has confirmed.
    confirmed: Option<u32>,
    /// Moves in flight, by op (neither killed nor stale).
    sent: BTreeMap<u64, Sent>,
    /// A move answered otherwise than 200, judged on the next look at
    /// the primary: its op, send and answer.
    pending: Option<(u64, Sent, Option<u16>)>,
}

impl Checker for MoveAnsweredOrExplained {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::SafekeeperSetConfirmed { generation, .. } => self.confirmed = *generation,
            Event::SafekeeperMoveSent {
                op,
                from,
                to,
                generation,
                killed: false,
                ..
            } => {
                let stale = matches!((generation, self.confirmed), (Some(g), Some(c)) if *g < c);
                if !stale {
                    let sent = Sent {
                        t0: t_us,
                        from: from.clone(),
                        to: to.clone(),
                    };
                    self.sent.insert(*op, sent);
                }
            }
            Event::SafekeeperMoveAnswered { op, status, .. } => {
                if let Some(sent) = self.sent.remove(op)
                    && *status != Some(200)
                {
                    self.pending = Some((*op, sent, *status));
                }
            }
            Event::PrimarySeen {
                status,
                failure_kind,
                ..
            } => {
                let Some((op, sent, answer)) = self.pending.take() else {
                    return;
                };
                let explained = *status == Some(ComputeStatus::Failed)
                    && failure_kind
                        .as_deref()
                        .is_some_and(|k| self.ledger.explains_failure(k).is_some());
                if !explained && !self.ledger.excuses_lost_request(sent.t0) {
                    let answer = answer.map_or("no answer".to_string(), |s| s.to_string());
                    out.push(format!(
                        "the safekeeper move (op {op}) from {:?} to {:?} was not answered 200: {answer}",
                        sent.from, sent.to
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

    fn sent(op: u64, generation: u32) -> Event {
        Event::SafekeeperMoveSent {
            boot: 1,
            op,
            from: vec!["sk1".into(), "sk2".into(), "sk3".into()],
            to: vec!["sk1".into(), "sk2".into(), "sk4".into()],
            generation: Some(generation),
            killed: false,
        }
    }

    fn answered(op: u64, status: Option<u16>) -> Event {
        Event::SafekeeperMoveAnswered {
            boot: 1,
            op,
            status,
        }
    }

    fn seen(status: ComputeStatus, kind: Option<&str>) -> Event {
        Event::PrimarySeen {
            status: Some(status),
            failure_kind: kind.map(str::to_string),
            exited: false,
            standby_names: None,
            spec: None,
        }
    }

    fn confirmed(generation: u32) -> Event {
        Event::SafekeeperSetConfirmed {
            op: 1,
            safekeepers: Vec::new(),
            generation: Some(generation),
        }
    }

    #[test]
    fn a_move_refused_on_a_running_primary_is_reported() {
        let mut c = MoveAnsweredOrExplained::default();
        let mut out = Vec::new();
        c.on_event(0, &confirmed(1), &mut out);
        c.on_event(10, &sent(2, 2), &mut out);
        c.on_event(11, &seen(ComputeStatus::Running, None), &mut out);
        c.on_event(20, &answered(2, Some(500)), &mut out);
        assert!(out.is_empty(), "judged on the next look: {out:?}");
        c.on_event(21, &seen(ComputeStatus::Running, None), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("(op 2)") && out[0].contains("answered 200: 500"));
    }

    #[test]
    fn a_failure_the_ledger_explains_excuses_it_one_it_does_not_and_a_stale_move_are_not() {
        let mut c = MoveAnsweredOrExplained::default();
        let mut out = Vec::new();
        c.on_event(0, &confirmed(3), &mut out);
        // Stale: move_generation's.
        c.on_event(10, &sent(2, 2), &mut out);
        c.on_event(20, &answered(2, Some(409)), &mut out);
        c.on_event(21, &seen(ComputeStatus::Running, None), &mut out);
        // Failed on the move with no fault that makes a reload fail.
        c.on_event(30, &sent(3, 4), &mut out);
        c.on_event(40, &answered(3, Some(500)), &mut out);
        c.on_event(
            41,
            &seen(ComputeStatus::Failed, Some("safekeeper_move")),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        // With one, it is explained.
        let reload = Event::Fault {
            kind: FaultKind::ReloadFails,
            start: true,
            window_ms: (0, Some(100)),
        };
        c.on_event(50, &reload, &mut out);
        c.on_event(60, &sent(4, 4), &mut out);
        c.on_event(70, &answered(4, Some(500)), &mut out);
        c.on_event(
            71,
            &seen(ComputeStatus::Failed, Some("safekeeper_move")),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
