//! The safekeeper set the control plane has confirmed
//! ([`Event::SafekeeperSetConfirmed`]) is the one in effect after a
//! safekeeper move's answer (issue 21), as the control plane sees the
//! primary right after it ([`Event::PrimarySeen`]): after a move's 200
//! (the move's, which it confirmed), after a stale generation's
//! refusal, and after a move that failed on a fault the ledger explains
//! while the supervisor lives (`safekeeper_move`: the product put the
//! old set's config back, so Postgres also holds the
//! `synchronous_standby_names` it had while the move was in flight).
//! Moves the control plane killed the host under are not judged.

use std::collections::BTreeMap;

use compute_ctl::state::ComputeStatus;

use super::Checker;
use super::window::ledger_sees;
use crate::events::Event;
use crate::ledger::FaultLedger;
use crate::names::operation_uuid;

/// The failure kind of a safekeeper move that put the old config back.
const MOVE_FAILED: &str = "safekeeper_move";

/// A move the control plane did not kill.
#[derive(Debug, Default)]
struct Move {
    stale: bool,
    /// Postgres' `synchronous_standby_names` as first seen while the move
    /// was in flight.
    before: Option<Option<String>>,
}

#[derive(Default)]
pub struct ConfirmedSetInEffect {
    ledger: FaultLedger,
    /// The confirmed spec's operation, safekeepers and generation.
    confirmed: Option<(u64, Vec<String>, Option<u32>)>,
    /// Moves in flight, by op.
    moves: BTreeMap<u64, Move>,
    /// A move answered, judged on the next look at the primary.
    pending: Option<(Move, Option<u16>)>,
}

impl Checker for ConfirmedSetInEffect {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::SafekeeperSetConfirmed {
                op,
                safekeepers,
                generation,
            } => self.confirmed = Some((*op, safekeepers.clone(), *generation)),
            Event::SafekeeperMoveSent {
                op,
                generation,
                killed: false,
                ..
            } => {
                let confirmed = self.confirmed.as_ref().and_then(|c| c.2);
                let stale = matches!((generation, confirmed), (Some(g), Some(c)) if *g < c);
                self.moves.insert(
                    *op,
                    Move {
                        stale,
                        before: None,
                    },
                );
            }
            Event::SafekeeperMoveAnswered { op, status, .. } => {
                if let Some(m) = self.moves.remove(op) {
                    self.pending = Some((m, *status));
                }
            }
            Event::PrimarySeen { standby_names, .. } => {
                if let Some((m, answer)) = self.pending.take() {
                    self.judge(&m, answer, ev, out);
                    return;
                }
                for m in self.moves.values_mut() {
                    m.before.get_or_insert_with(|| standby_names.clone());
                }
            }
            _ => {}
        }
    }
}

impl ConfirmedSetInEffect {
    /// Judges what `seen` (an [`Event::PrimarySeen`]) shows right after
    /// the answer `answer` to `m`; nothing when no supervisor runs.
    fn judge(&self, m: &Move, answer: Option<u16>, seen: &Event, out: &mut Vec<String>) {
        let Event::PrimarySeen {
            status: Some(status),
            failure_kind,
            exited,
            standby_names,
            spec,
        } = seen
        else {
            return;
        };
        let when = if m.stale {
            "after a stale safekeepers_generation"
        } else if answer == Some(200) {
            "after the move's 200"
        } else if *status == ComputeStatus::Failed
            && failure_kind.as_deref() == Some(MOVE_FAILED)
            && self.ledger.explains_failure(MOVE_FAILED).is_some()
            && !exited
        {
            let before = m.before.clone().flatten();
            if *standby_names != before {
                out.push(format!(
                    "a safekeeper move that failed left synchronous_standby_names = {standby_names:?} in force, not the old set's {before:?}"
                ));
            }
            "after a safekeeper move that failed on a fault"
        } else {
            return;
        };
        let Some((op, safekeepers, generation)) = &self.confirmed else {
            return;
        };
        let have = spec.as_ref().map(|s| {
            (
                s.operation_uuid.clone(),
                s.safekeepers.clone(),
                s.generation,
            )
        });
        let expected = (Some(operation_uuid(*op)), safekeepers.clone(), *generation);
        if have.as_ref() != Some(&expected) {
            out.push(format!(
                "{when}: the spec in effect is {have:?}, not {expected:?}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SpecInEffect;
    use crate::faults::FaultKind;

    const OLD: &str = "'sk1:5454','sk2:5454','sk3:5454'";

    fn set(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| format!("{h}:5454")).collect()
    }

    fn confirmed(op: u64, hosts: &[&str], generation: u32) -> Event {
        Event::SafekeeperSetConfirmed {
            op,
            safekeepers: set(hosts),
            generation: Some(generation),
        }
    }

    fn sent(op: u64, generation: u32) -> Event {
        Event::SafekeeperMoveSent {
            boot: 1,
            op,
            from: Vec::new(),
            to: Vec::new(),
            generation: Some(generation),
            killed: false,
        }
    }

    fn answered(op: u64, status: u16) -> Event {
        Event::SafekeeperMoveAnswered {
            boot: 1,
            op,
            status: Some(status),
        }
    }

    fn seen(
        status: ComputeStatus,
        kind: Option<&str>,
        names: &str,
        op: u64,
        hosts: &[&str],
        generation: u32,
    ) -> Event {
        Event::PrimarySeen {
            status: Some(status),
            failure_kind: kind.map(str::to_string),
            exited: false,
            standby_names: Some(names.to_string()),
            spec: Some(SpecInEffect {
                operation_uuid: Some(operation_uuid(op)),
                safekeepers: set(hosts),
                generation: Some(generation),
            }),
        }
    }

    #[test]
    fn a_move_answered_200_whose_set_is_not_in_effect_is_reported() {
        let mut c = ConfirmedSetInEffect::default();
        let mut out = Vec::new();
        let abc = ["sk1", "sk2", "sk3"];
        let abd = ["sk1", "sk2", "sk4"];
        c.on_event(0, &confirmed(1, &abc, 1), &mut out);
        c.on_event(1, &sent(2, 2), &mut out);
        c.on_event(2, &answered(2, 200), &mut out);
        c.on_event(3, &confirmed(2, &abd, 2), &mut out);
        c.on_event(
            4,
            &seen(ComputeStatus::Running, None, OLD, 2, &abd, 2),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // A stale one that took effect.
        c.on_event(5, &sent(3, 1), &mut out);
        c.on_event(6, &answered(3, 200), &mut out);
        c.on_event(
            7,
            &seen(ComputeStatus::Running, None, OLD, 3, &abc, 1),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].starts_with("after a stale safekeepers_generation: the spec in effect"));
    }

    #[test]
    fn a_failed_move_that_kept_the_joint_config_is_reported() {
        let mut c = ConfirmedSetInEffect::default();
        let mut out = Vec::new();
        let abc = ["sk1", "sk2", "sk3"];
        let reload = Event::Fault {
            kind: FaultKind::ReloadFails,
            start: true,
            window_ms: (0, Some(900)),
        };
        c.on_event(0, &reload, &mut out);
        c.on_event(0, &confirmed(1, &abc, 1), &mut out);
        c.on_event(1, &sent(2, 2), &mut out);
        c.on_event(
            1,
            &seen(ComputeStatus::Running, None, OLD, 1, &abc, 1),
            &mut out,
        );
        c.on_event(2, &answered(2, 500), &mut out);
        let joint = "ANY 2 (sk1, sk2, sk3, sk4)";
        let failed = Some(MOVE_FAILED);
        c.on_event(
            3,
            &seen(ComputeStatus::Failed, failed, joint, 1, &abc, 1),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("left synchronous_standby_names = Some(\"ANY 2"));
        // Put back: fine.
        out.clear();
        c.on_event(4, &sent(3, 2), &mut out);
        c.on_event(
            4,
            &seen(ComputeStatus::Running, None, OLD, 1, &abc, 1),
            &mut out,
        );
        c.on_event(5, &answered(3, 500), &mut out);
        c.on_event(
            6,
            &seen(ComputeStatus::Failed, failed, OLD, 1, &abc, 1),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
