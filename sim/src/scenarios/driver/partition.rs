//! The partitions a scenario makes itself, through its [`Driver`]: each
//! cuts the link its [`FaultKind`] names ([`FaultKind::link`]) and is
//! recorded as the schedule's faults are, a window in the fault ledger
//! and a [`Event::Fault`] in the event log (open until it is repaired),
//! so the checkers and every excuse see it as they see a scheduled one.
//! The one place outside the world's fault injection that cuts links
//! (sim/tests/layering.rs checks it).

use super::{Driver, now_us};
use crate::events::Event;
use crate::faults::FaultKind;

impl Driver {
    /// Cuts the link of `kind` (a two-way partition: [`FaultKind::link`])
    /// from now until [`Driver::repair`]; recorded as a fault that started
    /// now with an open end. Cutting a link this scenario already cut
    /// changes nothing. A kind that is not a partition is the scenario's
    /// mistake, reported as a violation.
    pub fn partition(&self, kind: FaultKind) {
        let Some((a, b)) = kind.link() else {
            self.violation(format!(
                "harness: {kind:?} is not a partition a scenario can make"
            ));
            return;
        };
        turmoil::partition(a, b);
        if self.shared.lock().ledger.open_since(kind).is_some() {
            return;
        }
        let from_ms = now_us() / 1000;
        self.shared.lock().ledger.opened(kind, from_ms * 1000, None);
        self.emit(Event::Fault {
            kind,
            start: true,
            window_ms: (from_ms, None),
        });
    }

    /// Repairs the link of `kind`, cut by [`Driver::partition`] or not (a
    /// scenario's repair mends a scheduled partition of the same link
    /// too); the partition this scenario made ends now.
    pub fn repair(&self, kind: FaultKind) {
        let Some((a, b)) = kind.link() else {
            self.violation(format!(
                "harness: {kind:?} is not a partition a scenario can repair"
            ));
            return;
        };
        turmoil::repair(a, b);
        let Some(from_us) = self.shared.lock().ledger.open_since(kind) else {
            return;
        };
        let (from_ms, to_ms) = (from_us / 1000, now_us() / 1000);
        self.shared
            .lock()
            .ledger
            .closed(kind, from_us, to_ms * 1000);
        self.emit(Event::Fault {
            kind,
            start: false,
            window_ms: (from_ms, Some(to_ms)),
        });
    }

    /// [`Driver::partition`] of the compute and safekeeper host `host`.
    pub fn partition_safekeeper(&self, host: &str) {
        match FaultKind::safekeeper_partition(host) {
            Some(kind) => self.partition(kind),
            None => self.violation(format!("harness: {host} is no safekeeper host")),
        }
    }

    /// [`Driver::repair`] of the compute and safekeeper host `host`.
    pub fn repair_safekeeper(&self, host: &str) {
        match FaultKind::safekeeper_partition(host) {
            Some(kind) => self.repair(kind),
            None => self.violation(format!("harness: {host} is no safekeeper host")),
        }
    }
}
