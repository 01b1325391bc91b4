//! A durable primary that answered its start serves the client's
//! read-back of its commits: the client giving up on it
//! ([`Event::ReadbackGaveUp`]) is excused only when the fault ledger has a
//! host crash that took the primary away in the meantime: from the start's
//! send on, since its 200 may arrive after the host that sent it crashed.

use super::Checker;
use super::window::ledger_sees;
use crate::events::Event;
use crate::ledger::FaultLedger;

#[derive(Default)]
pub struct PrimaryServesReadback {
    ledger: FaultLedger,
}

impl Checker for PrimaryServesReadback {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        ledger_sees(&mut self.ledger, ev);
        if let Event::ReadbackGaveUp { boot, since_us } = ev
            && !self.ledger.fired_during("host_crash", *since_us, t_us)
        {
            out.push(format!(
                "the client could not read back the commits of the running primary (boot {boot})"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultKind;

    #[test]
    fn a_readback_given_up_is_reported_unless_the_host_crashed_meanwhile() {
        let mut c = PrimaryServesReadback::default();
        let mut out = Vec::new();
        let gave_up = |since_us| Event::ReadbackGaveUp { boot: 2, since_us };
        // A crash that ended before the start was sent excuses nothing.
        let crash = Event::Fault {
            kind: FaultKind::HostCrash,
            start: true,
            window_ms: (100, Some(200)),
        };
        c.on_event(100_000, &crash, &mut out);
        c.on_event(3_000_000, &gave_up(1_000_000), &mut out);
        assert_eq!(
            out,
            ["the client could not read back the commits of the running primary (boot 2)"]
        );
        out.clear();
        // One during the read-back does; another fault does not.
        let mut c = PrimaryServesReadback::default();
        let down = Event::Fault {
            kind: FaultKind::StorageDown,
            start: true,
            window_ms: (1_100, Some(1_200)),
        };
        c.on_event(1_100_000, &down, &mut out);
        c.on_event(3_000_000, &gave_up(1_000_000), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        c.on_event(1_500_000, &crash_at(1_500), &mut out);
        c.on_event(3_000_000, &gave_up(1_000_000), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    fn crash_at(ms: u64) -> Event {
        Event::Fault {
            kind: FaultKind::HostCrash,
            start: true,
            window_ms: (ms, Some(ms + 100)),
        }
    }
}
