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

    /// The fault that fired and can explain a compute ending Failed with
    /// `failure_kind` ([`causes_of`]), if there is one.
    pub fn explains_failure(&self, failure_kind: &str) -> Option<FaultKind> {
        let causes = causes_of(failure_kind);
        self.windows
            .iter()
            .map(|w| w.kind)
            .find(|k| causes.contains(&k.name()))
    }

    /// The names of the faults that fired, each once, in the order they
    /// first fired (what a failure no fault explains is reported with).
    pub fn fired_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for w in &self.windows {
            if !names.contains(&w.kind.name()) {
                names.push(w.kind.name());
            }
        }
        names
    }

    /// A safekeeper fault's window overlapped `[t0_us, t1_us]`.
    pub fn safekeeper_fault_during(&self, t0_us: u64, t1_us: u64) -> bool {
        self.windows
            .iter()
            .any(|w| w.kind.safekeeper().is_some() && w.start_us <= t1_us && t0_us <= w.end_us)
    }

    /// A fault of the kind named `name` started before `t1_us` and had not
    /// ended by `t0_us` (its window overlapped `[t0_us, t1_us]`).
    pub fn fired_during(&self, name: &str, t0_us: u64, t1_us: u64) -> bool {
        self.windows
            .iter()
            .any(|w| w.kind.name() == name && w.start_us <= t1_us && t0_us <= w.end_us)
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

/// Which faults can leave the compute Failed with each failure kind
/// (`compute_ctl::compute::FailReason::kind`, `/status.failure_kind`):
/// a failure is excused only by a fault that fired and is listed for its
/// kind; a kind not listed is excused by nothing. Derived from what the
/// seeds show (`sim --seeds N --trace`: the `end` event's `failure_kind`
/// beside the `fault` events that started), each cause with why.
pub const FAILURE_CAUSES: &[(&str, &[&str])] = &[
    // The simulated postmaster exits on its own only when a crash fault
    // fires (start-up, a query, a SIGHUP); a host crash takes the
    // supervisor with it, so no boot fails on it.
    ("postgres_exited", &["pg_crash"]),
    ("postgres_not_running", &["pg_crash"]),
    // The readiness wait: the postmaster died in it or started too late.
    ("postgres_not_ready", &["pg_crash", "slow_start"]),
    // The catalog apply's statements run into `statement_timeout` (only
    // hung queries outlast it; blocked and slow ones end with their
    // fault) or lose their session when the postmaster crashes.
    ("catalog", &["hung_queries", "blocked_queries", "pg_crash"]),
    // A SIGHUP that did not take, the postmaster gone under it, or the one
    // `pg_file_settings` check after it hanging until `statement_timeout`
    // (then whether Postgres took the config is unknown).
    ("reload", &["reload_fails", "pg_crash", "hung_queries"]),
    ("config_refused", &["reload_fails"]),
    // A durable primary's move to another safekeeper set: its joint
    // config's SIGHUP did not take (Postgres keeps the old set's), so
    // the move puts the old config back and fails; or the postmaster
    // crashed under that SIGHUP, so the check that the joint config is in
    // force finds no Postgres.
    ("safekeeper_move", &["reload_fails", "pg_crash"]),
    // PGDATA from the pageserver, which is down or cut off, or (a durable
    // primary without one, or with it down) from a safekeeper that goes
    // down or is cut off during the backup.
    (
        "base_backup",
        &[
            "storage_down",
            "partition_storage",
            "safekeeper_down",
            "safekeeper_partition",
        ],
    ),
    (
        "backup_source",
        &[
            "storage_down",
            "partition_storage",
            "safekeeper_down",
            "safekeeper_partition",
        ],
    ),
    // A durable primary's safekeepers: no majority answered the sync, none
    // could be caught up from, or no quorum streamed (and flushed) in time.
    (
        "safekeeper_sync",
        &["safekeeper_down", "safekeeper_partition"],
    ),
    (
        "catch_up",
        &["safekeeper_down", "safekeeper_partition", "safekeeper_lag"],
    ),
    (
        "quorum",
        &["safekeeper_down", "safekeeper_partition", "safekeeper_lag"],
    ),
    // The spec or the key set did not come from the control plane.
    (
        "spec_source",
        &["partition_cplane", "loss", "hold", "latency"],
    ),
];

/// The fault kinds that can cause a failure of kind `failure_kind`.
pub fn causes_of(failure_kind: &str) -> &'static [&'static str] {
    FAILURE_CAUSES
        .iter()
        .find(|(k, _)| *k == failure_kind)
        .map_or(&[][..], |(_, causes)| *causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Fault;
    use crate::pgmodel::PgPhase;

    fn ledger(kinds: &[FaultKind]) -> FaultLedger {
        let mut l = FaultLedger::default();
        for (i, &kind) in kinds.iter().enumerate() {
            l.record(&Fault {
                at_ms: 100 * i as u64,
                for_ms: 50,
                kind,
            });
        }
        l
    }

    #[test]
    fn a_failure_is_explained_only_by_a_fault_that_can_cause_it() {
        let crash = FaultKind::PgCrash {
            phase: PgPhase::Query,
        };
        let l = ledger(&[FaultKind::StorageDown, crash]);
        assert_eq!(
            l.explains_failure("base_backup"),
            Some(FaultKind::StorageDown)
        );
        assert_eq!(l.explains_failure("postgres_exited"), Some(crash));
        // Neither can make the safekeepers fail the sync, nor a spec fetch.
        assert_eq!(l.explains_failure("safekeeper_sync"), None);
        assert_eq!(l.explains_failure("spec_source"), None);
        // A kind the table does not list is excused by nothing.
        assert_eq!(l.explains_failure("abandoned"), None);
        assert_eq!(l.fired_names(), ["storage_down", "pg_crash"]);

        let l = ledger(&[FaultKind::SafekeeperPartition { sk: 1 }]);
        assert!(l.explains_failure("safekeeper_sync").is_some());
        // The base backup may come from a safekeeper; a catalog apply
        // never talks to one.
        assert!(l.explains_failure("base_backup").is_some());
        assert!(l.explains_failure("catalog").is_none());
        assert!(ledger(&[]).explains_failure("reload").is_none());

        // A safekeeper move fails on a reload that does not take (or a
        // postmaster crash under it); a safekeeper fault alone never
        // excuses one.
        let l = ledger(&[FaultKind::ReloadFails]);
        assert_eq!(
            l.explains_failure("safekeeper_move"),
            Some(FaultKind::ReloadFails)
        );
        let l = ledger(&[FaultKind::SafekeeperDown { sk: 0 }]);
        assert!(l.explains_failure("safekeeper_move").is_none());
    }

    #[test]
    fn fired_during_is_the_window_overlap_of_one_kind() {
        // host_crash from 0 to 50 ms, storage_down from 100 to 150 ms.
        let l = ledger(&[FaultKind::HostCrash, FaultKind::StorageDown]);
        assert!(l.fired_during("host_crash", 40_000, 60_000));
        assert!(l.fired_during("host_crash", 50_000, 200_000));
        assert!(!l.fired_during("host_crash", 51_000, 200_000));
        assert!(!l.fired_during("storage_down", 0, 99_000));
    }

    #[test]
    fn the_failure_table_names_known_faults_once_per_kind() {
        let mut kinds: Vec<&str> = Vec::new();
        for (kind, causes) in FAILURE_CAUSES {
            assert!(!kinds.contains(kind), "{kind} listed twice");
            kinds.push(kind);
            assert!(!causes.is_empty(), "{kind} has no cause");
            for c in *causes {
                assert!(FaultKind::NAMES.contains(c), "{kind}: unknown fault {c}");
            }
        }
        for n in QUERY_DELAYS {
            assert!(FaultKind::NAMES.contains(n), "unknown fault {n}");
        }
    }
}
