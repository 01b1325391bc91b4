//! Test-only planted bugs: known production bugs the simulator must catch.
//!
//! With the cargo feature `planted-bugs` (enabled only by the simulator's
//! tests, through its dev-dependency), a test may plant one [`Bug`] on the
//! current thread (the simulation runs every host on the caller's thread).
//! Without the feature [`active`] is a constant `false` and the hooks in
//! the supervisor, the SQL session helper and the catalog apply are dead
//! code: the production path is the `else` branch of each hook.

/// A bug the simulator proves it detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// Neon's incident: a `/configure` with `skip_pg_catalog_updates` still
    /// runs the full catalog apply.
    CatalogDespiteSkipFlag,
    /// Reload through SQL `pg_reload_conf()` (hangs when Postgres is
    /// unhealthy) instead of SIGHUP.
    ReloadViaSql,
    /// The supervisor's sessions run without a server-side `statement_timeout`.
    NoStatementTimeout,
    /// The catalog apply forgets what exists and re-creates it.
    NonIdempotentApply,
    /// The vm-monitor accepts a downscale without the 100 MiB buffer above
    /// current usage.
    DownscaleWithoutBuffer,
    /// A primary with safekeepers acknowledges a commit before a majority
    /// flushed it (`pg/conf.rs` renders `synchronous_commit = local`).
    AckBeforeQuorum,
    /// The catch-up of a new primary with safekeepers picks the least
    /// advanced safekeeper that answered (its base backup source when there
    /// is no pageserver, and the LSN it replays to before promoting), not
    /// the most advanced one (`storage/catchup.rs`).
    BackupBehindSafekeepers,
    /// The new primary with safekeepers starts writing on the timeline of
    /// its base backup: no `standby.signal`, no `pg_promote()` onto a new
    /// timeline (`storage/catchup.rs`).
    SkipTimelineSwitch,
    /// The new primary with safekeepers promotes onto whatever timeline
    /// `pg_promote()` picks: no claim on the safekeepers, no reserved
    /// history files (`compute/durable.rs`, `storage/timeline_claim.rs`).
    UnclaimedTimeline,
}

impl Bug {
    pub const ALL: [Bug; 9] = [
        Bug::CatalogDespiteSkipFlag,
        Bug::ReloadViaSql,
        Bug::NoStatementTimeout,
        Bug::NonIdempotentApply,
        Bug::DownscaleWithoutBuffer,
        Bug::AckBeforeQuorum,
        Bug::BackupBehindSafekeepers,
        Bug::SkipTimelineSwitch,
        Bug::UnclaimedTimeline,
    ];
}

/// Whether planting is compiled in.
pub const ENABLED: bool = cfg!(feature = "planted-bugs");

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) on this thread; returns false (and does nothing)
/// when planting is not compiled in.
pub fn plant(bug: Option<Bug>) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|p| p.set(bug));
        true
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        bug.is_none()
    }
}

/// Whether `bug` is planted on this thread (always false in production builds).
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|p| p.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
