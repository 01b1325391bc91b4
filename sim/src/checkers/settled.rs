//! Once the fault schedule is over, the compute settles within the
//! driver's bound: running the spec the control plane wants, or Failed or
//! Terminated (judged by `converged.rs`). The driver logs giving up
//! ([`Event::SettleGaveUp`]), and nothing excuses it: every fault has
//! ended by then.

use std::time::Duration;

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct SettlesAfterFaults;

impl Checker for SettlesAfterFaults {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        if let Event::SettleGaveUp {
            status,
            deadline_ms,
        } = ev
        {
            let deadline = Duration::from_millis(*deadline_ms);
            out.push(format!(
                "the compute did not settle within {deadline:?} after faults stopped (status {status:?})"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_ctl::state::ComputeStatus;

    #[test]
    fn a_compute_that_never_settled_is_reported_with_its_status() {
        let mut c = SettlesAfterFaults;
        let mut out = Vec::new();
        // Settling is no event: a run that settled logs none.
        c.on_event(0, &Event::Healed, &mut out);
        let running = Event::Status {
            boot: 0,
            status: ComputeStatus::Running,
        };
        c.on_event(1, &running, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let gave_up = |status| Event::SettleGaveUp {
            status,
            deadline_ms: 180_000,
        };
        c.on_event(
            2,
            &gave_up(Some(ComputeStatus::ConfigurationPending)),
            &mut out,
        );
        c.on_event(3, &gave_up(None), &mut out);
        assert_eq!(
            out,
            [
                "the compute did not settle within 180s after faults stopped (status Some(ConfigurationPending))",
                "the compute did not settle within 180s after faults stopped (status None)",
            ]
        );
    }
}
