//! What a scenario writes to the event log, through its [`Driver`]: typed
//! events, free-form trace events, violations, and the control plane's
//! requests sent and answered (for the request checkers).

use super::{Driver, Sent, answer, send};
use crate::events::{Event, Request};
use crate::http::Outcome;

impl Driver {
    /// Appends `ev` to the event log now: traced, and seen by every
    /// checker.
    pub fn emit(&self, ev: Event) {
        self.shared.emit(ev);
    }

    /// Appends a free-form trace event `kind` with `fields` now (no
    /// checker reads it).
    pub fn event(&self, kind: &str, fields: serde_json::Value) {
        self.shared.event(kind, fields);
    }

    /// [`Driver::event`] at `t_us`.
    pub fn event_at(&self, t_us: u64, kind: &str, fields: serde_json::Value) {
        self.shared.event_at(t_us, kind, fields);
    }

    /// Records a harness failure (a host that never answered, a listener
    /// that could not bind, a scenario's mistake): no invariant, which are
    /// all checkers'.
    pub fn violation(&self, what: impl Into<String>) {
        self.shared.violation(what);
    }

    /// Logs that the control plane sends `path` (a `kind` request of
    /// operation `op`) to the compute now; for a request the scenario
    /// sends itself, logged as answered with [`Driver::answer`].
    pub fn send(&self, kind: Request, path: &str, op: u64) -> Sent {
        send(&self.shared, kind, path, op)
    }

    /// Logs how `sent` ended (`out`), now.
    pub fn answer(&self, sent: &Sent, out: &Outcome) {
        answer(&self.shared, sent, out);
    }
}
