//! The event log of one world: every typed [`Event`] in the order it
//! happened, traced and shown to every checker as it is appended, with the
//! violations the checkers found. The world appends; it never judges.

use crate::checkers::Checkers;
use crate::events::Event;
use crate::trace::Trace;

#[derive(Default)]
pub struct EventLog {
    /// The serialised log (and the violations), one JSON line each.
    pub trace: Trace,
    /// The invariants fed by the log.
    checkers: Checkers,
    /// Invariant violations, in the order they were found.
    pub violations: Vec<String>,
}

impl EventLog {
    /// Appends `ev` at `t_us`: traced, then seen by every checker.
    pub fn append(&mut self, t_us: u64, ev: &Event) {
        self.trace.push_event(t_us, ev);
        for what in self.checkers.on_event(t_us, ev) {
            self.violation(t_us, what);
        }
    }

    /// Every checker's end-of-run verdict.
    pub fn at_end(&mut self) -> Vec<String> {
        self.checkers.at_end()
    }

    /// Records an invariant violation at `t_us` (and traces it).
    pub fn violation(&mut self, t_us: u64, what: String) {
        self.trace
            .push(t_us, "violation", serde_json::json!({"what": what}));
        self.violations.push(what);
    }
}
