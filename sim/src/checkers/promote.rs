//! The promote scenario's requests, as its control plane logs their
//! answers ([`Event::PromoteAnswered`], `scenarios/promote.rs`), judged
//! here, one property per checker:
//! - [`ReplicaFollows`]: the replica starts following a safekeeper (its
//!   first configure answered 200, unless it is Failed on something a
//!   fault that fired can cause) and moves to another one (200);
//! - [`PromoteContract`]: `/promote` refuses a primary (412), two sent at
//!   once get the same answer, the replica's promote completes (or says
//!   the compute stays a replica, and a later one completes after a move),
//!   and the promoted compute ends running;
//! - [`TerminateAnswersLsn`]: a primary with safekeepers answers
//!   `/terminate` 200 with the `lsn` a quorum flushed, unless a safekeeper
//!   fault overlapped the request (then no quorum may answer).

use compute_ctl::state::ComputeStatus;
use serde_json::Value;

use super::Checker;
use super::window::ledger_sees;
use crate::events::{Event, PromoteCall};
use crate::ledger::FaultLedger;

/// What the error of a replica whose safekeeper missed the old primary's
/// last WAL says (it stays a replica; the control plane moves it).
const STAYS: &str = "the compute stays a replica";

/// The answer of a completed promote (200 with `"status": "completed"`).
fn completed(code: Option<u16>, body: &str) -> Option<Value> {
    if code != Some(200) {
        return None;
    }
    serde_json::from_str::<Value>(body)
        .ok()
        .filter(|v| v["status"] == "completed")
}

/// How a request ended, for a message.
fn said(outcome: &str, body: &str) -> String {
    if body.is_empty() {
        outcome.to_string()
    } else {
        format!("{outcome} {body}")
    }
}

/// The replica starts following a safekeeper and moves to another.
#[derive(Default)]
pub struct ReplicaFollows {
    ledger: FaultLedger,
}

impl Checker for ReplicaFollows {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        let Event::PromoteAnswered {
            call,
            outcome,
            code,
            body,
            failed_with,
            ..
        } = ev
        else {
            return;
        };
        match call {
            // No answer: the control plane tries again.
            PromoteCall::ReplicaStart { follows } if code.is_some_and(|c| c != 200) => {
                let on_a_fault = failed_with
                    .as_deref()
                    .is_some_and(|k| self.ledger.explains_failure(k).is_some());
                if !on_a_fault {
                    out.push(format!(
                        "the replica following {follows} did not start: {}",
                        said(outcome, body)
                    ));
                }
            }
            PromoteCall::ReplicaMove { follows } if *code != Some(200) => out.push(format!(
                "moving the replica to safekeeper {follows} got {outcome}"
            )),
            _ => {}
        }
    }
}

/// `/promote` as Neon's control plane uses it.
#[derive(Default)]
pub struct PromoteContract {
    /// What the last promote of the replica (the first of a pair) got:
    /// (its completed answer, how it ended).
    last: Option<(Option<Value>, String)>,
    /// The last promote said the compute stays a replica, and nothing
    /// since ended the control plane's tries (a move it could not make).
    stays: bool,
}

impl Checker for PromoteContract {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let (call, outcome, code, body) = match ev {
            Event::PromotedStatus { status } => {
                if *status != Some(ComputeStatus::Running) {
                    out.push(format!(
                        "the promoted compute is {status:?} at the end, not running"
                    ));
                }
                return;
            }
            Event::PromoteAnswered {
                call,
                outcome,
                code,
                body,
                ..
            } => (call, outcome, *code, body),
            _ => return,
        };
        match call {
            PromoteCall::PromotePrimary if code != Some(412) => {
                out.push(format!("POST /promote to a primary got {outcome}, not 412"))
            }
            PromoteCall::Promote { concurrent: false } => {
                let answer = completed(code, body);
                self.stays = false;
                if answer.is_none() {
                    if code == Some(500) && body.contains(STAYS) {
                        self.stays = true;
                    } else {
                        out.push(format!(
                            "POST /promote did not complete: {}",
                            said(outcome, body)
                        ));
                    }
                }
                self.last = Some((answer, said(outcome, body)));
            }
            PromoteCall::Promote { concurrent: true } => {
                let Some((first, first_said)) = &self.last else {
                    return;
                };
                if completed(code, body) != *first {
                    out.push(format!(
                        "a second concurrent promote got another answer: {}, not {first_said}",
                        said(outcome, body)
                    ));
                }
            }
            // Its own violation (`ReplicaFollows`) ended the tries.
            PromoteCall::ReplicaMove { .. } if code != Some(200) => self.stays = false,
            _ => {}
        }
    }

    fn at_end(&mut self, out: &mut Vec<String>) {
        if self.stays {
            let last = self.last.as_ref().map_or("", |(_, s)| s.as_str());
            out.push(format!(
                "POST /promote did not complete: the compute stayed a replica on every safekeeper it was moved to: {last}"
            ));
        }
    }
}

/// A primary with safekeepers answers `/terminate` 200 with its `lsn`.
#[derive(Default)]
pub struct TerminateAnswersLsn {
    ledger: FaultLedger,
}

impl Checker for TerminateAnswersLsn {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        let Event::PromoteAnswered {
            call: PromoteCall::TerminatePrimary,
            outcome,
            code,
            body,
            sent_us,
            ..
        } = ev
        else {
            return;
        };
        if *code != Some(200) {
            out.push(format!("the primary's /terminate got {outcome}"));
        }
        let lsn = (*code == Some(200))
            .then(|| serde_json::from_str::<Value>(body).ok())
            .flatten()
            .and_then(|v| v["lsn"].as_str().map(str::to_string));
        // With a majority of the safekeepers away the supervisor cannot
        // tell what a quorum flushed and answers the shutdown checkpoint,
        // which the simulated Postgres has no `pg_controldata` for.
        if lsn.is_none() && !self.ledger.safekeeper_fault_during(*sent_us, t_us) {
            out.push(
                "the primary's /terminate answered no lsn (a primary with safekeepers must)".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultKind;

    fn answered(call: PromoteCall, code: Option<u16>, body: &str) -> Event {
        Event::PromoteAnswered {
            call,
            outcome: code.map_or("transport_error".into(), |c| c.to_string()),
            code,
            body: body.into(),
            sent_us: 0,
            failed_with: None,
        }
    }

    fn run(c: &mut dyn Checker, evs: &[Event]) -> Vec<String> {
        let mut out = Vec::new();
        for (t, ev) in evs.iter().enumerate() {
            c.on_event(t as u64, ev, &mut out);
        }
        c.at_end(&mut out);
        out
    }

    const DONE: &str = r#"{"status":"completed","lsn":"0/10"}"#;

    #[test]
    fn a_promote_that_completes_once_moved_passes_and_one_that_never_does_is_reported() {
        let stays = format!("{{\"error\":\"{STAYS}\"}}");
        let promote =
            |code, body: &str| answered(PromoteCall::Promote { concurrent: false }, code, body);
        let moved = |code| {
            answered(
                PromoteCall::ReplicaMove {
                    follows: "sk2".into(),
                },
                code,
                "",
            )
        };
        let ok = run(
            &mut PromoteContract::default(),
            &[
                promote(Some(500), &stays),
                moved(Some(200)),
                promote(Some(200), DONE),
                answered(PromoteCall::Promote { concurrent: true }, Some(200), DONE),
                Event::PromotedStatus {
                    status: Some(ComputeStatus::Running),
                },
            ],
        );
        assert!(ok.is_empty(), "{ok:?}");
        // Still a replica on the last safekeeper: reported at the end.
        let out = run(
            &mut PromoteContract::default(),
            &[
                promote(Some(500), &stays),
                moved(Some(200)),
                promote(Some(500), &stays),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("stayed a replica"), "{out:?}");
        // A pair that disagrees, a primary that accepts a promote, and a
        // promoted compute that ends Failed.
        let out = run(
            &mut PromoteContract::default(),
            &[
                answered(PromoteCall::PromotePrimary, Some(200), ""),
                promote(Some(200), DONE),
                answered(PromoteCall::Promote { concurrent: true }, Some(409), "busy"),
                Event::PromotedStatus {
                    status: Some(ComputeStatus::Failed),
                },
            ],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("to a primary got 200, not 412"), "{out:?}");
        assert!(out[1].contains("got another answer: 409 busy"), "{out:?}");
        assert!(out[2].contains("Some(Failed) at the end"), "{out:?}");
    }

    #[test]
    fn a_replica_start_is_excused_only_by_a_failure_a_fault_can_cause() {
        let start = |failed_with: Option<&str>| Event::PromoteAnswered {
            call: PromoteCall::ReplicaStart {
                follows: "sk1".into(),
            },
            outcome: "500".into(),
            code: Some(500),
            body: "boom".into(),
            sent_us: 0,
            failed_with: failed_with.map(str::to_string),
        };
        let fault = Event::Fault {
            kind: FaultKind::SafekeeperDown { sk: 0 },
            start: true,
            window_ms: (0, Some(10)),
        };
        let moved = |code| {
            answered(
                PromoteCall::ReplicaMove {
                    follows: "sk3".into(),
                },
                code,
                "",
            )
        };
        let out = run(
            &mut ReplicaFollows::default(),
            &[
                fault,
                start(Some("base_backup")),
                start(Some("catalog")),
                start(None),
                moved(Some(200)),
                moved(None),
            ],
        );
        assert_eq!(
            out,
            [
                "the replica following sk1 did not start: 500 boom",
                "the replica following sk1 did not start: 500 boom",
                "moving the replica to safekeeper sk3 got transport_error"
            ]
        );
    }

    #[test]
    fn a_terminate_without_lsn_is_excused_only_by_a_safekeeper_fault_during_it() {
        let terminate = |code: Option<u16>, body: &str, sent_us| Event::PromoteAnswered {
            call: PromoteCall::TerminatePrimary,
            outcome: code.map_or("transport_error".into(), |c| c.to_string()),
            code,
            body: body.into(),
            sent_us,
            failed_with: None,
        };
        let mut c = TerminateAnswersLsn::default();
        let mut out = Vec::new();
        c.on_event(
            5_000,
            &terminate(Some(200), r#"{"lsn":"0/10"}"#, 1_000),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        let fault = Event::Fault {
            kind: FaultKind::SafekeeperPartition { sk: 1 },
            start: true,
            window_ms: (10, Some(20)),
        };
        c.on_event(10_000, &fault, &mut out);
        // During the fault: excused; long after it: not.
        c.on_event(15_000, &terminate(Some(200), "{}", 12_000), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_event(90_000, &terminate(Some(200), "{}", 80_000), &mut out);
        assert_eq!(
            out,
            ["the primary's /terminate answered no lsn (a primary with safekeepers must)"]
        );
        out.clear();
        c.on_event(99_000, &terminate(Some(503), "{}", 95_000), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], "the primary's /terminate got 503");
    }
}
