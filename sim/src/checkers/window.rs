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

/// Records a fault that started into `ledger`.
pub fn ledger_sees(ledger: &mut FaultLedger, ev: &Event) {
    if let Event::Fault {
        kind,
        start: true,
        window_ms: (from, to),
    } = ev
    {
        ledger.record(&Fault {
            at_ms: *from,
            for_ms: to - from,
            kind: *kind,
        });
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
}
