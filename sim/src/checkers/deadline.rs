//! A request the control plane's driver sends (a configure, notify,
//! re-send, dry run, terminate, the unauthenticated probe) is answered
//! within its deadline on a healthy network: the driver logs one that
//! was not ([`Event::DeadlineExceeded`]). Excused by the fault ledger when
//! a network fault may have lost it (`FaultLedger::excuses_lost_request`
//! at its send: turmoil does not retransmit), or when the compute's
//! supervisor had exited ([`Event::SupervisorExit`] since the host's last
//! [`Event::Boot`]): its binary lingers or drains and applies nothing.

use super::Checker;
use super::window::ledger_sees;
use crate::events::Event;
use crate::ledger::FaultLedger;

#[derive(Default)]
pub struct AnsweredWithinDeadline {
    ledger: FaultLedger,
    /// The supervisor of the compute's current boot has exited.
    exited: bool,
}

impl Checker for AnsweredWithinDeadline {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::Boot { .. } => self.exited = false,
            Event::SupervisorExit { .. } => self.exited = true,
            Event::DeadlineExceeded {
                path, op, sent_us, ..
            } if !self.exited && !self.ledger.excuses_lost_request(*sent_us) => {
                out.push(format!(
                    "POST {path} (op {op}) got no answer within its deadline on a healthy network"
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_ctl::state::ComputeStatus;

    use crate::faults::FaultKind;

    fn timed_out(sent_us: u64) -> Event {
        Event::DeadlineExceeded {
            req: 3,
            path: "/configure".into(),
            op: 7,
            sent_us,
        }
    }

    const VIOLATION: &str =
        "POST /configure (op 7) got no answer within its deadline on a healthy network";

    #[test]
    fn a_request_unanswered_on_a_healthy_network_is_reported() {
        let mut c = AnsweredWithinDeadline::default();
        let mut out = Vec::new();
        c.on_event(
            0,
            &Event::Boot {
                host: "compute".into(),
                boot: 0,
            },
            &mut out,
        );
        c.on_event(181_000_000, &timed_out(1_000_000), &mut out);
        assert_eq!(out, [VIOLATION]);
    }

    #[test]
    fn a_network_fault_around_the_send_excuses_it_another_fault_does_not() {
        let fault = |kind, from, to| Event::Fault {
            kind,
            start: true,
            window_ms: (from, Some(to)),
        };
        let mut c = AnsweredWithinDeadline::default();
        let mut out = Vec::new();
        // Storage going down loses no request of the control plane.
        c.on_event(500_000, &fault(FaultKind::StorageDown, 500, 900), &mut out);
        c.on_event(181_000_000, &timed_out(1_000_000), &mut out);
        assert_eq!(out, [VIOLATION]);
        out.clear();
        // A partition of the control plane's link, until after the send.
        let cut = FaultKind::PartitionCplane { oneway: false };
        c.on_event(600_000, &fault(cut, 600, 2_000), &mut out);
        c.on_event(182_000_000, &timed_out(1_000_000), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Long after it (and its grace) is over, no longer.
        c.on_event(400_000_000, &timed_out(200_000_000), &mut out);
        assert_eq!(out, [VIOLATION]);
    }

    #[test]
    fn an_exited_supervisor_excuses_it_until_the_host_boots_again() {
        let mut c = AnsweredWithinDeadline::default();
        let mut out = Vec::new();
        let exit = Event::SupervisorExit {
            status: ComputeStatus::Failed,
            reason: "postgres exited".into(),
        };
        c.on_event(1_000_000, &exit, &mut out);
        c.on_event(181_000_000, &timed_out(1_000_000), &mut out);
        assert!(out.is_empty(), "{out:?}");
        let boot = Event::Boot {
            host: "compute".into(),
            boot: 1,
        };
        c.on_event(190_000_000, &boot, &mut out);
        c.on_event(380_000_000, &timed_out(191_000_000), &mut out);
        assert_eq!(out, [VIOLATION]);
    }
}
