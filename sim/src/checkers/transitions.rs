//! Every status the watch channel shows follows a legal path of the status
//! machine from the one before (within a boot), and every boot starts Empty.

use compute_ctl::state::{ComputeStatus, Event as StateEvent, transition};

use super::Checker;
use crate::events::Event;

#[derive(Default)]
pub struct Transitions {
    /// The last status seen, with its boot.
    last: Option<(u64, ComputeStatus)>,
    first_seen: bool,
}

/// The watch channel may coalesce changes made without a yield in between;
/// accept a path of up to three legal steps.
fn legal_path(from: ComputeStatus, to: ComputeStatus) -> bool {
    let mut frontier = vec![from];
    for _ in 0..3 {
        let mut next = Vec::new();
        for s in &frontier {
            for e in StateEvent::ALL {
                if let Ok(n) = transition(*s, e) {
                    if n == to {
                        return true;
                    }
                    next.push(n);
                }
            }
        }
        frontier = next;
    }
    false
}

impl Checker for Transitions {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let Event::Status { boot, status } = ev else {
            return;
        };
        if !self.first_seen {
            self.first_seen = true;
            if *status != ComputeStatus::Empty {
                out.push(format!("the compute started in status {status}, not empty"));
            }
        }
        if let Some((b0, s0)) = self.last {
            if b0 == *boot && s0 != *status && !legal_path(s0, *status) {
                out.push(format!(
                    "illegal status transition {s0} -> {status} at {t_us} µs"
                ));
            }
        }
        self.last = Some((*boot, *status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(statuses: &[(u64, ComputeStatus)]) -> Vec<String> {
        let mut c = Transitions::default();
        let mut out = Vec::new();
        for (i, (boot, status)) in statuses.iter().enumerate() {
            let ev = Event::Status {
                boot: *boot,
                status: *status,
            };
            c.on_event(i as u64, &ev, &mut out);
        }
        out
    }

    #[test]
    fn an_illegal_jump_is_reported_and_a_reboot_is_not() {
        use ComputeStatus::*;
        assert!(feed(&[(0, Empty), (0, ConfigurationPending), (0, Running)]).is_empty());
        let bad = feed(&[(0, Empty), (0, Terminated), (0, Running)]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("illegal status transition terminated -> running"));
        assert!(feed(&[(0, Empty), (0, Failed), (1, Empty)]).is_empty());
        assert_eq!(feed(&[(0, Running)]).len(), 1);
    }
}
