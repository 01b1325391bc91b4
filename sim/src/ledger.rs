//! The fault ledger: every fault the schedule started, with its window, and
//! the one place that answers "does a fault excuse this?" for the checkers,
//! the driver and the scenarios.

use crate::faults::{Fault, FaultKind};

/// How long after a network fault ends a request started before its end
/// may still run into its deadline (its retries back off).
pub const NETWORK_GRACE_US: u64 = 1_000_000;

/// One fault that started: its kind and its scheduled window (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultWindow {
    pub kind: FaultKind,
    pub start_us: u64,
    pub end_us: u64,
}

/// The faults that fired in one world, in the order they started.
#[derive(Debug, Clone, Default)]
pub struct FaultLedger {
    windows: Vec<FaultWindow>,
}

impl FaultLedger {
    /// Records that `f` started.
    pub fn record(&mut self, f: &Fault) {
        self.windows.push(FaultWindow {
            kind: f.kind,
            start_us: f.at_ms * 1000,
            end_us: (f.at_ms + f.for_ms) * 1000,
        });
    }

    pub fn windows(&self) -> &[FaultWindow] {
        &self.windows
    }

    /// Whether any fault fired at all.
    pub fn any(&self) -> bool {
        !self.windows.is_empty()
    }

    /// Whether a fault of the kind named `name` (see [`FaultKind::name`]) fired.
    pub fn fired(&self, name: &str) -> bool {
        self.windows.iter().any(|w| w.kind.name() == name)
    }

    /// Until when (µs) network faults may delay a request: the end of the
    /// last network fault plus [`NETWORK_GRACE_US`]; 0 without one.
    pub fn network_until(&self) -> u64 {
        self.windows
            .iter()
            .filter(|w| w.kind.is_network())
            .map(|w| w.end_us + NETWORK_GRACE_US)
            .max()
            .unwrap_or(0)
    }

    /// A request sent at `t0_us` may legitimately get no answer in time.
    pub fn excuses_lost_request(&self, t0_us: u64) -> bool {
        t0_us < self.network_until()
    }

    /// The fault that can explain a compute ending Failed, if one fired.
    pub fn explains_failure(&self) -> Option<FaultKind> {
        self.windows
            .iter()
            .map(|w| w.kind)
            .find(|k| FAILURE_CAUSES.contains(&k.name()))
    }

    /// A notify may answer 200 without a SIGHUP having taken effect: the
    /// reload failed or Postgres crashed.
    pub fn excuses_missing_reload(&self) -> bool {
        self.fired("reload_fails") || self.fired("pg_crash")
    }

    /// A notify between `t0_us` and `t1_us` may exceed its bound: after its
    /// reload it asks Postgres one query (the `pg_file_settings` check of
    /// issue 24), and a fault that held queries back overlapped it.
    pub fn excuses_slow_notify(&self, t0_us: u64, t1_us: u64) -> bool {
        self.windows.iter().any(|w| {
            QUERY_DELAYS.contains(&w.kind.name()) && w.start_us <= t1_us && t0_us <= w.end_us
        })
    }

    /// The running Postgres may still hold an older config: a reload failed.
    pub fn excuses_stale_config(&self) -> bool {
        self.fired("reload_fails")
    }
}

/// Fault kinds that hold a query back (the notify's one check included).
pub const QUERY_DELAYS: &[&str] = &[
    "blocked_queries",
    "hung_queries",
    "slow_queries",
    "pg_crash",
];

/// Fault kinds that can legitimately leave the compute Failed.
pub const FAILURE_CAUSES: &[&str] = &[
    "pg_crash",
    "blocked_queries",
    "hung_queries",
    "slow_queries",
    "storage_down",
    "host_crash",
    "reload_fails",
    "partition",
];
