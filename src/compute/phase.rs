//! The phases of a start, a reconfigure and a promote, each named in one
//! place: its failpoint and span name (`start.prepare_pgdata`; the crash
//! campaign's `COMPUTE_CTL_FAILPOINT` names these, byte for byte), the
//! histogram label and timings field its duration counts into
//! ([`Stage`]), a finer timings field it also counts into ([`Part`]), and
//! whether a terminate or the postmaster's exit cuts it short.
//!
//! A stage groups the phases that follow each other under one of Neon's
//! timing names: `start_postgres_ms` is the config write and the
//! postmaster's start. `Compute::phase` (`phase_run.rs`) runs a phase.

/// What a phase is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Start,
    Reconfigure,
    Promote,
}

impl Operation {
    /// The `operation` label of the metrics and spans.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Reconfigure => "reconfigure",
            Operation::Promote => "promote",
        }
    }
}

/// A phase of an operation, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// With safekeepers: the commit LSN from a majority of them.
    StartSyncSafekeepers,
    /// With safekeepers: the base backup's source reaches the commit LSN,
    /// or (a primary) the catch-up is planned.
    StartBackupSource,
    /// The binary's settings read, and a base backup source of another
    /// major refused before the copy.
    /// PGDATA by initdb or base backup.
    StartPreparePgdata,
    StartWriteConfig,
    StartPostgres,
    /// A primary with safekeepers: replay up to the most advanced one.
    StartCatchUp,
    StartPromote,
    StartAnnounce,
    StartQuorum,
    StartCatalog,
    StartDone,
    /// A safekeeper move: the joint quorum in force.
    ReconfigureSafekeepersJoint,
    ReconfigureSafekeepersAnnounce,
    ReconfigureSafekeepersCatchUp,
    ReconfigureWriteConfig,
    /// SIGHUP, and the check that Postgres took the config.
    ReconfigureReload,
    ReconfigureCatalog,
    ReconfigureDone,
    PromoteLsnWait,
    /// The primary's config written, reloaded and checked.
    PromoteWriteConfig,
    PromoteQuorumInForce,
    PromotePgPromote,
    PromoteAnnounce,
    PromoteQuorum,
    PromoteCatalog,
    PromoteDone,
}

/// A histogram label (`compute_ctl_phase_duration_seconds{phase}`) and
/// the timings field of the same name (`<label>_ms`; a promote's
/// `<label>_time_ms`, as Neon's `PromoteState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PreparePgdata,
    StartPostgres,
    CatchUp,
    Promote,
    Announce,
    Quorum,
    /// The start's catalog pass (Neon's `config_ms`).
    Config,
    WriteConfig,
    Reload,
    Catalog,
    LsnWait,
    PgPromote,
    /// Everything after `pg_promote()` (Neon's `reconfigure_time_ms`).
    PromoteReconfigure,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::PreparePgdata => "prepare_pgdata",
            Stage::StartPostgres => "start_postgres",
            Stage::CatchUp => "catch_up",
            Stage::Promote => "promote",
            Stage::Announce => "announce",
            Stage::Quorum => "quorum",
            Stage::Config => "config",
            Stage::WriteConfig => "write_config",
            Stage::Reload => "reload",
            Stage::Catalog => "catalog",
            Stage::LsnWait => "lsn_wait",
            Stage::PgPromote => "pg_promote",
            Stage::PromoteReconfigure => "reconfigure",
        }
    }
}

/// A timings field finer than the stages (no histogram of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `sync_safekeepers_ms`.
    SyncSafekeepers,
    /// `basebackup_ms` (only when a base backup was taken).
    Basebackup,
    /// `safekeeper_move_ms`.
    SafekeeperMove,
    /// A promote's `announce_time_ms`, `quorum_time_ms`, `catalog_time_ms`.
    Announce,
    Quorum,
    Catalog,
}

/// One row of the table below.
struct Row {
    name: &'static str,
    stage: Option<Stage>,
    part: Option<Part>,
    interruptible: bool,
}

const fn row(
    name: &'static str,
    stage: Option<Stage>,
    part: Option<Part>,
    interruptible: bool,
) -> Row {
    Row {
        name,
        stage,
        part,
        interruptible,
    }
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 26] = [
        Phase::StartSyncSafekeepers,
        Phase::StartBackupSource,
        Phase::StartPreparePgdata,
        Phase::StartWriteConfig,
        Phase::StartPostgres,
        Phase::StartCatchUp,
        Phase::StartPromote,
        Phase::StartAnnounce,
        Phase::StartQuorum,
        Phase::StartCatalog,
        Phase::StartDone,
        Phase::ReconfigureSafekeepersJoint,
        Phase::ReconfigureSafekeepersAnnounce,
        Phase::ReconfigureSafekeepersCatchUp,
        Phase::ReconfigureWriteConfig,
        Phase::ReconfigureReload,
        Phase::ReconfigureCatalog,
        Phase::ReconfigureDone,
        Phase::PromoteLsnWait,
        Phase::PromoteWriteConfig,
        Phase::PromoteQuorumInForce,
        Phase::PromotePgPromote,
        Phase::PromoteAnnounce,
        Phase::PromoteQuorum,
        Phase::PromoteCatalog,
        Phase::PromoteDone,
    ];

    /// The one table of names.
    fn row(self) -> Row {
        use Part as P;
        use Phase::*;
        use Stage as S;
        match self {
            StartSyncSafekeepers => row(
                "start.sync_safekeepers",
                Some(S::PreparePgdata),
                Some(P::SyncSafekeepers),
                true,
            ),
            StartBackupSource => row(
                "start.backup_source",
                Some(S::PreparePgdata),
                Some(P::Basebackup),
                true,
            ),
            StartPreparePgdata => row(
                "start.prepare_pgdata",
                Some(S::PreparePgdata),
                Some(P::Basebackup),
                true,
            ),
            StartWriteConfig => row("start.write_config", Some(S::StartPostgres), None, false),
            StartPostgres => row("start.start_postgres", Some(S::StartPostgres), None, true),
            StartCatchUp => row("start.catch_up", Some(S::CatchUp), None, true),
            StartPromote => row("start.promote", Some(S::Promote), None, true),
            StartAnnounce => row("start.announce", Some(S::Announce), None, true),
            StartQuorum => row("start.quorum", Some(S::Quorum), None, true),
            StartCatalog => row("start.catalog", Some(S::Config), None, true),
            StartDone => row("start.done", Some(S::Config), None, false),
            ReconfigureSafekeepersJoint => row(
                "reconfigure.safekeepers_joint",
                None,
                Some(P::SafekeeperMove),
                false,
            ),
            ReconfigureSafekeepersAnnounce => row(
                "reconfigure.safekeepers_announce",
                None,
                Some(P::SafekeeperMove),
                false,
            ),
            ReconfigureSafekeepersCatchUp => row(
                "reconfigure.safekeepers_catch_up",
                None,
                Some(P::SafekeeperMove),
                false,
            ),
            ReconfigureWriteConfig => row(
                "reconfigure.write_config",
                Some(S::WriteConfig),
                None,
                false,
            ),
            ReconfigureReload => row("reconfigure.reload", Some(S::Reload), None, false),
            ReconfigureCatalog => row("reconfigure.catalog", Some(S::Catalog), None, true),
            ReconfigureDone => row("reconfigure.done", None, None, false),
            PromoteLsnWait => row("promote.lsn_wait", Some(S::LsnWait), None, true),
            PromoteWriteConfig => row("promote.write_config", Some(S::PgPromote), None, false),
            PromoteQuorumInForce => row("promote.quorum_in_force", Some(S::PgPromote), None, true),
            PromotePgPromote => row("promote.pg_promote", Some(S::PgPromote), None, true),
            PromoteAnnounce => row(
                "promote.announce",
                Some(S::PromoteReconfigure),
                Some(P::Announce),
                true,
            ),
            PromoteQuorum => row(
                "promote.quorum",
                Some(S::PromoteReconfigure),
                Some(P::Quorum),
                true,
            ),
            PromoteCatalog => row(
                "promote.catalog",
                Some(S::PromoteReconfigure),
                Some(P::Catalog),
                true,
            ),
            PromoteDone => row("promote.done", Some(S::PromoteReconfigure), None, false),
        }
    }

    /// The failpoint (`Processes::failpoint`) and the span's name.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn operation(self) -> Operation {
        match self.name().split_once('.').map(|(op, _)| op) {
            Some("start") => Operation::Start,
            Some("reconfigure") => Operation::Reconfigure,
            _ => Operation::Promote,
        }
    }

    /// The name after the operation's (the span's `phase` attribute).
    pub fn step(self) -> &'static str {
        self.name().split_once('.').map_or("", |(_, s)| s)
    }

    /// The histogram label and timings field its duration counts into.
    pub fn stage(self) -> Option<Stage> {
        self.row().stage
    }

    /// A finer timings field its duration also counts into.
    pub fn part(self) -> Option<Part> {
        self.row().part
    }

    /// Whether a terminate request or the postmaster's exit cuts it short
    /// (the others are short, or must finish what they started: a reload
    /// checked, a safekeeper move put back).
    pub fn interruptible(self) -> bool {
        self.row().interruptible
    }

    /// The last phase of its operation: a failpoint, no span.
    pub fn is_done(self) -> bool {
        self.step() == "done"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_name_their_operation() {
        let mut names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
        for p in Phase::ALL {
            assert_eq!(
                p.name(),
                format!("{}.{}", p.operation().name(), p.step()),
                "{p:?}"
            );
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Phase::ALL.len());
    }

    #[test]
    fn the_crash_campaigns_failpoints_are_still_there() {
        // tests/it/crash_phases.rs and crash_durable.rs name these.
        for name in [
            "start.sync_safekeepers",
            "start.prepare_pgdata",
            "start.write_config",
            "start.start_postgres",
            "start.catch_up",
            "start.promote",
            "start.announce",
            "start.quorum",
            "start.catalog",
            "start.done",
            "reconfigure.safekeepers_joint",
            "reconfigure.safekeepers_announce",
            "reconfigure.safekeepers_catch_up",
            "reconfigure.write_config",
            "reconfigure.reload",
            "reconfigure.catalog",
            "reconfigure.done",
        ] {
            assert!(
                Phase::ALL.iter().any(|p| p.name() == name),
                "{name} is gone"
            );
        }
    }
}
