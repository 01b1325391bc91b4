//! What the request checkers share: a time-ordered log of what happened
//! (statements, reloads) read back by a request's window, the requests in
//! flight, and a fault ledger fed by the log's `Fault` events.

use std::collections::BTreeMap;

use crate::events::Event;
use crate::faults::Fault;
use crate::ledger::FaultLedger;

/// Entries in the order they were appended (so in simulated-time order).
#[derive(Debug)]
pub struct Log<T>(Vec<(u64, T)>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Log<T> {
    pub fn push(&mut self, t_us: u64, v: T) {
        self.0.push((t_us, v));
    }

    /// The entries of `[t0, t1]` (both ends included, as simulated time
    /// moves in steps and a window's ends share theirs with other events).
    pub fn window(&self, t0: u64, t1: u64) -> impl Iterator<Item = &T> {
        let from = self.0.partition_point(|(t, _)| *t < t0);
        self.0[from..]
            .iter()
            .take_while(move |(t, _)| *t <= t1)
            .map(|(_, v)| v)
    }

    /// When the first entry of `[t0, t1]` was appended.
    pub fn first_in(&self, t0: u64, t1: u64) -> Option<u64> {
        let from = self.0.partition_point(|(t, _)| *t < t0);
        self.0.get(from).map(|(t, _)| *t).filter(|t| *t <= t1)
    }

    /// Forgets the entries before `t_us` (no window can reach them).
    pub fn forget_before(&mut self, t_us: u64) {
        let n = self.0.partition_point(|(t, _)| *t < t_us);
        if n > 0 {
            self.0.drain(..n);
        }
    }
}

/// Requests in flight: when each was sent and what its checker noted then.
#[derive(Debug)]
pub struct InFlight<T>(BTreeMap<u64, (u64, T)>);

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> InFlight<T> {
    pub fn sent(&mut self, req: u64, t_us: u64, noted: T) {
        self.0.insert(req, (t_us, noted));
    }

    /// The send time and note of `req`, now answered.
    pub fn answered(&mut self, req: u64) -> Option<(u64, T)> {
        self.0.remove(&req)
    }

    /// Before what time entries of a log may be forgotten at `now`: the
    /// earliest send still in flight, else now.
    pub fn horizon(&self, now: u64) -> u64 {
        self.0.values().map(|(t, _)| *t).min().unwrap_or(now)
    }
}

/// Records a fault that started into `ledger`, and the end of one that
/// started open (a scenario's partition).
pub fn ledger_sees(ledger: &mut FaultLedger, ev: &Event) {
    match ev {
        Event::Fault {
            kind,
            start: true,
            window_ms: (from, Some(to)),
        } => ledger.record(&Fault {
            at_ms: *from,
            for_ms: to.saturating_sub(*from),
            kind: *kind,
        }),
        Event::Fault {
            kind,
            start: true,
            window_ms: (from, None),
        } => ledger.opened(*kind, from * 1000, None),
        Event::Fault {
            kind,
            start: false,
            window_ms: (from, Some(to)),
        } => {
            ledger.closed(*kind, from * 1000, to * 1000);
        }
        _ => {}
    }
}

/// A statement of the supervisor's own sessions.
pub fn supervisor(app: &str) -> bool {
    app == compute_ctl::pg::APPLICATION_NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_includes_both_ends_and_forgetting_keeps_the_horizon() {
        let mut log = Log::default();
        for (t, v) in [(1, 'a'), (3, 'b'), (3, 'c'), (5, 'd')] {
            log.push(t, v);
        }
        assert_eq!(log.window(3, 5).collect::<String>(), "bcd");
        assert_eq!(log.first_in(2, 4), Some(3));
        assert_eq!(log.first_in(6, 9), None);
        log.forget_before(3);
        assert_eq!(log.window(0, 9).collect::<String>(), "bcd");
        let mut sent = InFlight::default();
        assert_eq!(sent.horizon(9), 9);
        sent.sent(1, 4, ());
        assert_eq!(sent.horizon(9), 4);
        assert_eq!(sent.answered(1), Some((4, ())));
    }

    #[test]
    fn the_ledger_sees_a_scenario_partition_open_then_closed() {
        let cut = crate::faults::FaultKind::PartitionStorage;
        let fault = |start, window_ms| Event::Fault {
            kind: cut,
            start,
            window_ms,
        };
        let mut l = FaultLedger::default();
        ledger_sees(&mut l, &fault(true, (100, None)));
        assert_eq!(l.open_since(cut), Some(100_000));
        ledger_sees(&mut l, &fault(false, (100, Some(400))));
        assert_eq!(l.open_since(cut), None);
        assert!(l.fired_during("partition_storage", 400_000, 500_000));
        assert!(!l.fired_during("partition_storage", 401_000, 500_000));
        // The schedule's: recorded at its start with its end.
        ledger_sees(&mut l, &fault(true, (600, Some(700))));
        ledger_sees(&mut l, &fault(false, (600, Some(700))));
        assert_eq!(l.windows().len(), 2);
        assert_eq!(l.windows()[1].end_us, 700_000);
    }
}
