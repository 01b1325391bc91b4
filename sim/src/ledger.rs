//! The fault ledger: every fault that started, with its window (the
//! schedule's, and the partitions a scenario makes itself through its
//! driver), and the one place that answers "does a fault excuse this?"
//! for the checkers, the driver and the scenarios.

use crate::faults::{Fault, FaultKind};
use crate::names::STORAGE;

/// How long after a network fault ends a request started before its end
/// may still run into its deadline (its retries back off).
pub const NETWORK_GRACE_US: u64 = 1_000_000;

/// One fault that started: its kind and its window (µs); a partition a
/// scenario made and has not repaired yet ends at [`OPEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultWindow {
    pub kind: FaultKind,
    pub start_us: u64,
    pub end_us: u64,
}

/// The end of a window still open (a scenario's partition not repaired).
pub const OPEN: u64 = u64::MAX;

/// The faults that fired in one world, in the order they started.
#[derive(Debug, Clone, Default)]
pub struct FaultLedger {
    windows: Vec<FaultWindow>,
}

impl FaultLedger {
    /// Records that `f` (of the schedule) started.
    pub fn record(&mut self, f: &Fault) {
        self.opened(f.kind, f.at_ms * 1000, Some((f.at_ms + f.for_ms) * 1000));
    }

    /// Records that a fault of `kind` started at `start_us`, to end at
    /// `end_us` (`None`: open until [`FaultLedger::closed`]).
    pub fn opened(&mut self, kind: FaultKind, start_us: u64, end_us: Option<u64>) {
        self.windows.push(FaultWindow {
            kind,
            start_us,
            end_us: end_us.unwrap_or(OPEN),
        });
    }

    /// Records that the open fault of `kind` started at `start_us` ended at
    /// `end_us`; whether there was one (a window with a known end is
    /// left as it is).
    pub fn closed(&mut self, kind: FaultKind, start_us: u64, end_us: u64) -> bool {
        let open = self
            .windows
            .iter_mut()
            .find(|w| w.kind == kind && w.start_us == start_us && w.end_us == OPEN);
        match open {
            Some(w) => {
                w.end_us = end_us.max(start_us);
                true
            }
            None => false,
        }
    }

    /// When the open fault of `kind` started, if one is open.
    pub fn open_since(&self, kind: FaultKind) -> Option<u64> {
        self.windows
            .iter()
            .find(|w| w.kind == kind && w.end_us == OPEN)
            .map(|w| w.start_us)
    }

    pub fn windows(&self) -> &[FaultWindow] {
        &self.windows
    }

    /// Whether any fault fired at all: the fleet's checkers judge only a
    /// fleet no fault touched (`checkers/fleet_answered.rs`).
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
            .map(|w| w.end_us.saturating_add(NETWORK_GRACE_US))
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

    /// The fault that can explain why a standby, moved to the storage host
    /// `source` by a notify sent at `sent_us` and answered 200 at
    /// `answered_us`, was not streaming from it by `t1_us`: one of
    /// [`STREAM_DISRUPTORS`] overlapping `[sent_us, t1_us]` (a cut off or
    /// downed storage only for its own host, see there), or a network
    /// fault that may still deliver an older request late
    /// ([`FaultLedger::excuses_lost_request`] at `answered_us`).
    pub fn explains_late_stream(
        &self,
        source: &str,
        sent_us: u64,
        answered_us: u64,
        t1_us: u64,
    ) -> Option<FaultKind> {
        let disrupts = |w: &FaultWindow| match w.kind {
            FaultKind::PartitionStorage => source == STORAGE,
            k => STREAM_DISRUPTORS.contains(&k.name()),
        };
        let overlapping = self
            .windows
            .iter()
            .find(|w| disrupts(w) && w.start_us <= t1_us && sent_us <= w.end_us)
            .map(|w| w.kind);
        overlapping.or_else(|| self.explains_lost_request(answered_us))
    }

    /// A request sent at `t0_us` that never got an answer, not even the
    /// refusal of a dying supervisor, may have been swallowed by a network
    /// fault: the one that may have, if any.
    pub fn explains_lost_request(&self, t0_us: u64) -> Option<FaultKind> {
        if !self.excuses_lost_request(t0_us) {
            return None;
        }
        self.windows
            .iter()
            .filter(|w| w.kind.is_network())
            .max_by_key(|w| w.end_us)
            .map(|w| w.kind)
    }
}

/// Fault kinds that can keep a standby's WAL receiver from streaming from
/// its new source soon after the move was answered 200: the postmaster
/// crashing (under the move's SIGHUP, it keeps the old source) or the
/// host; a start made slow; a SIGHUP that did not take; the storage down
/// (a storage that follows it stops too, so a replica ahead of it waits).
/// A storage cut off from the compute ([`FaultKind::PartitionStorage`])
/// only for a move to [`STORAGE`] itself: one that follows it still
/// streams. Queries held back never touch the receiver.
pub const STREAM_DISRUPTORS: &[&str] = &[
    "pg_crash",
    "host_crash",
    "slow_start",
    "reload_fails",
    "storage_down",
    "partition_storage",
];

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
    fn a_scenario_partition_is_open_until_repaired() {
        let cut = FaultKind::SafekeeperPartition { sk: 1 };
        let mut l = FaultLedger::default();
        l.opened(cut, 5_000, None);
        assert_eq!(l.open_since(cut), Some(5_000));
        // Open: it overlaps every later window and explains what a cut
        // safekeeper explains.
        assert!(l.fired_during("safekeeper_partition", 900_000_000, 900_000_001));
        assert!(l.explains_failure("safekeeper_sync").is_some());
        // Not a network fault: no request is excused by it.
        assert_eq!(l.network_until(), 0);
        // The end of another start closes nothing.
        assert!(!l.closed(cut, 4_000, 9_000));
        assert!(l.closed(cut, 5_000, 9_000));
        assert_eq!(l.open_since(cut), None);
        assert!(!l.fired_during("safekeeper_partition", 10_000, 20_000));
        // A schedule's window keeps its end.
        let mut s = ledger(&[FaultKind::PartitionStorage]);
        assert!(!s.closed(FaultKind::PartitionStorage, 0, 10));
        assert_eq!(s.windows()[0].end_us, 50_000);
        // An open network fault excuses every later request, without overflow.
        s.opened(FaultKind::PartitionCplane { oneway: false }, 0, None);
        assert!(s.excuses_lost_request(u64::MAX - 1));
    }

    #[test]
    fn a_late_stream_is_explained_only_by_what_disrupts_that_stream() {
        let t = |ms: u64| ms * 1000;
        // storage cut off from 0 to 50 ms: a stream from storage2 is not
        // its concern, one from storage is.
        let l = ledger(&[FaultKind::PartitionStorage]);
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(10), t(20), t(3_020)),
            None
        );
        assert_eq!(
            l.explains_late_stream(STORAGE, t(10), t(20), t(3_020)),
            Some(FaultKind::PartitionStorage)
        );
        // A crash during the move explains it; one before the move does not.
        let crash = FaultKind::PgCrash {
            phase: PgPhase::Reload,
        };
        let l = ledger(&[crash]);
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(40), t(45), t(3_045)),
            Some(crash)
        );
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(60), t(65), t(3_065)),
            None
        );
        // Slow queries never touch the receiver.
        let l = ledger(&[FaultKind::SlowQueries { delay_ms: 900 }]);
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(10), t(20), t(3_020)),
            None
        );
        // A message hold may deliver an older move late, until its grace ends.
        let l = ledger(&[FaultKind::HoldCplane]);
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(500), t(600), t(3_600)),
            Some(FaultKind::HoldCplane)
        );
        assert_eq!(
            l.explains_late_stream(crate::names::STORAGE2, t(2_000), t(2_100), t(5_100)),
            None
        );
    }

    #[test]
    fn a_lost_request_is_explained_by_the_network_fault_that_may_have_lost_it() {
        let l = ledger(&[FaultKind::Loss, FaultKind::SlowQueries { delay_ms: 5 }]);
        assert_eq!(l.explains_lost_request(900_000), Some(FaultKind::Loss));
        assert_eq!(l.explains_lost_request(1_050_000), None);
        assert_eq!(
            ledger(&[FaultKind::BlockedQueries]).explains_lost_request(0),
            None
        );
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
        for n in QUERY_DELAYS.iter().chain(STREAM_DISRUPTORS) {
            assert!(FaultKind::NAMES.contains(n), "unknown fault {n}");
        }
    }
}
