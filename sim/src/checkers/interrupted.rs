//! A configure that a `/terminate` interrupts is answered (409 or 500),
//! never left hanging until the control plane's deadline: unless the fault
//! ledger says a network fault may have swallowed it
//! ([`FaultLedger::explains_lost_request`] at its send).

use std::collections::BTreeMap;

use super::Checker;
use super::window::ledger_sees;
use crate::events::{Event, Request};
use crate::ledger::FaultLedger;

/// The outcome of a request that got no answer within its deadline
/// (`http::Outcome::DeadlineExceeded`'s label).
const DEADLINE_EXCEEDED: &str = "deadline_exceeded";

#[derive(Default)]
pub struct InterruptedConfigureAnswered {
    ledger: FaultLedger,
    /// Configures in flight: when each was sent, and whether a terminate
    /// was sent while it was.
    configures: BTreeMap<u64, (u64, bool)>,
}

impl Checker for InterruptedConfigureAnswered {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::RequestSent {
                req,
                kind: Request::Configure,
                ..
            } => {
                self.configures.insert(*req, (t_us, false));
            }
            Event::RequestSent {
                kind: Request::Terminate,
                ..
            } => {
                for (_, interrupted) in self.configures.values_mut() {
                    *interrupted = true;
                }
            }
            Event::Answered {
                req,
                kind: Request::Configure,
                outcome,
                ..
            } => {
                let Some((t0, interrupted)) = self.configures.remove(req) else {
                    return;
                };
                if interrupted
                    && outcome == DEADLINE_EXCEEDED
                    && self.ledger.explains_lost_request(t0).is_none()
                {
                    out.push("the configure interrupted by /terminate was never answered".into());
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

    fn sent(req: u64, kind: Request) -> Event {
        Event::RequestSent {
            req,
            kind,
            path: "/configure".into(),
            op: req,
            seen: None,
        }
    }

    fn answered(req: u64, outcome: &str) -> Event {
        Event::Answered {
            req,
            kind: Request::Configure,
            path: "/configure".into(),
            op: req,
            outcome: outcome.into(),
            code: outcome.parse().ok(),
            ms: 0,
            seen: None,
        }
    }

    #[test]
    fn a_configure_left_hanging_by_a_terminate_is_reported() {
        let mut c = InterruptedConfigureAnswered::default();
        let mut out = Vec::new();
        c.on_event(0, &sent(1, Request::Configure), &mut out);
        c.on_event(100, &sent(2, Request::Terminate), &mut out);
        c.on_event(180_000_000, &answered(1, DEADLINE_EXCEEDED), &mut out);
        assert_eq!(
            out,
            ["the configure interrupted by /terminate was never answered"]
        );
        // Answered 409: as it should; and a configure no terminate
        // interrupted is not this checker's to judge.
        out.clear();
        c.on_event(200_000_000, &sent(3, Request::Configure), &mut out);
        c.on_event(200_000_100, &sent(4, Request::Terminate), &mut out);
        c.on_event(200_000_200, &answered(3, "409"), &mut out);
        c.on_event(200_000_300, &sent(5, Request::Configure), &mut out);
        c.on_event(380_000_300, &answered(5, DEADLINE_EXCEEDED), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_network_fault_around_its_send_excuses_it_a_query_fault_does_not() {
        for (kind, excused) in [(FaultKind::Loss, true), (FaultKind::BlockedQueries, false)] {
            let mut c = InterruptedConfigureAnswered::default();
            let mut out = Vec::new();
            let fault = Event::Fault {
                kind,
                start: true,
                window_ms: (0, Some(500)),
            };
            c.on_event(0, &fault, &mut out);
            c.on_event(1_000, &sent(1, Request::Configure), &mut out);
            c.on_event(2_000, &sent(2, Request::Terminate), &mut out);
            c.on_event(180_001_000, &answered(1, DEADLINE_EXCEEDED), &mut out);
            assert_eq!(out.is_empty(), excused, "{kind:?}: {out:?}");
        }
    }
}
