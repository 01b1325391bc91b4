//! Durations of the phases of a start and of a reconfigure, summed from
//! the phases run ([`PhaseClock`]).

use std::time::Duration;

use serde::Serialize;

use super::ms;
use super::phase::{Operation, Part, Phase, Stage};
use crate::metrics::Metrics;
use crate::pg::BaseBackup;
use crate::spec::ComputeSpec;

/// Phases of the first start, in milliseconds (served by `/metrics.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StartupTimings {
    pub wait_for_spec_ms: u64,
    /// Neon's phases (`/metrics.json` of Neon's contract).
    /// Asking the safekeepers for the commit LSN (0 without safekeepers).
    pub sync_safekeepers_ms: u64,
    /// The base backup itself (0 after initdb), after the source reached the commit LSN.
    pub basebackup_ms: u64,
    /// Bytes the base backup wrote into PGDATA.
    pub basebackup_bytes: u64,
    /// Connecting to the storage (0 until measured: vanilla Postgres has no pageserver).
    pub pageserver_connect_micros: u64,
    pub prepare_pgdata_ms: u64,
    pub start_postgres_ms: u64,
    pub config_ms: u64,
    pub total_startup_ms: u64,
    /// A primary with safekeepers (0 otherwise): replaying up to the most
    /// advanced safekeeper, the promotion onto a new timeline, pointing the
    /// safekeepers at this compute, and waiting for a quorum to stream.
    pub catch_up_ms: u64,
    pub promote_ms: u64,
    pub announce_ms: u64,
    pub quorum_ms: u64,
}

/// How far a catalog apply got before a terminate request or the
/// postmaster's exit cut it short (`/status.catalog_interrupted`). Each
/// statement commits on its own, so the `executed` ones stay; the next apply
/// of the same spec plans from what the catalog then holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogInterrupted {
    /// The apply of a first start (`start`) or of a `reconfigure`.
    pub operation: &'static str,
    /// What cut it short: `terminate` or `postmaster_exit`.
    pub by: &'static str,
    /// Statements planned so far. Per-database extension work is planned as
    /// each database is visited, so an apply cut short in that last part may
    /// not have planned all of it yet: then this is a lower bound.
    pub planned: u64,
    /// Statements whose answers were read, each of them committed.
    pub executed: u64,
}

/// What the last reconfigure did and how long each phase took.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconfigureTimings {
    pub operation_uuid: Option<String>,
    pub skip_pg_catalog_updates: bool,
    pub write_config_ms: u64,
    pub reload_ms: u64,
    pub catalog_ms: u64,
    pub total_ms: u64,
    /// Catalog statements executed (0 when the skip flag was set).
    pub catalog_statements: u64,
    /// A move to another safekeeper set: the joint quorum, the announce and
    /// the new set's catch-up, before the config is written (0 otherwise;
    /// not part of `write_config_ms`).
    pub safekeeper_move_ms: u64,
}

/// The phases of the operation under way and how long each took; the
/// timings above are sums of them ([`Stage`], [`Part`]). A stage's
/// histogram is observed once its phases are over (when a phase of another
/// stage begins, or the operation ends), so a failed operation records the
/// stages it finished.
#[derive(Debug, Default)]
pub(super) struct PhaseClock {
    took: Vec<(Phase, Duration)>,
    /// The stage whose phases are under way, and their sum so far.
    open: Option<(Phase, Stage, Duration)>,
}

impl PhaseClock {
    /// `phase` begins: the stage before it is observed when it is another.
    pub(super) fn enter(&mut self, phase: Phase, metrics: &Metrics) {
        if self.open.map(|(_, s, _)| Some(s)) != Some(phase.stage()) {
            self.flush(metrics);
            self.open = phase.stage().map(|s| (phase, s, Duration::ZERO));
        }
    }

    /// `phase` took `took`.
    pub(super) fn leave(&mut self, phase: Phase, took: Duration) {
        self.took.push((phase, took));
        if let Some((_, s, sum)) = self.open.as_mut() {
            if phase.stage() == Some(*s) {
                *sum += took;
            }
        }
    }

    /// The operation ended after `total`: the last stage and the total are
    /// observed.
    pub(super) fn finish(&mut self, operation: Operation, total: Duration, metrics: &Metrics) {
        self.flush(metrics);
        metrics.observe_phase(operation.name(), "total", total);
    }

    fn flush(&mut self, metrics: &Metrics) {
        if let Some((phase, stage, sum)) = self.open.take() {
            metrics.observe_phase(phase.operation().name(), stage.label(), sum);
        }
    }

    /// The time spent in `stage`'s phases.
    pub(super) fn stage(&self, stage: Stage) -> Duration {
        self.sum(|p| p.stage() == Some(stage))
    }

    /// The time spent in the phases counted into `part`.
    pub(super) fn part(&self, part: Part) -> Duration {
        self.sum(|p| p.part() == Some(part))
    }

    fn sum(&self, which: impl Fn(Phase) -> bool) -> Duration {
        self.took
            .iter()
            .filter(|(p, _)| which(*p))
            .map(|(_, d)| *d)
            .sum()
    }
}

impl StartupTimings {
    /// A completed start's timings: `wait_for_spec` before it, the phases'
    /// durations, `total` including the wait, and the base backup taken (if
    /// any).
    pub(super) fn from_phases(
        clock: &PhaseClock,
        wait_for_spec: Duration,
        total: Duration,
        backup: Option<&BaseBackup>,
    ) -> Self {
        let stage = |s| ms(clock.stage(s));
        Self {
            wait_for_spec_ms: ms(wait_for_spec),
            sync_safekeepers_ms: ms(clock.part(Part::SyncSafekeepers)),
            basebackup_ms: backup.map_or(0, |_| ms(clock.part(Part::Basebackup))),
            basebackup_bytes: backup.map_or(0, |b| b.bytes),
            pageserver_connect_micros: 0,
            prepare_pgdata_ms: stage(Stage::PreparePgdata),
            start_postgres_ms: stage(Stage::StartPostgres),
            config_ms: stage(Stage::Config),
            total_startup_ms: ms(total),
            catch_up_ms: stage(Stage::CatchUp),
            promote_ms: stage(Stage::Promote),
            announce_ms: stage(Stage::Announce),
            quorum_ms: stage(Stage::Quorum),
        }
    }
}

impl ReconfigureTimings {
    /// A completed reconfigure's timings.
    pub(super) fn from_phases(
        clock: &PhaseClock,
        spec: &ComputeSpec,
        catalog_statements: u64,
        total: Duration,
    ) -> Self {
        Self {
            operation_uuid: spec.operation_uuid.clone(),
            skip_pg_catalog_updates: spec.skip_pg_catalog_updates,
            write_config_ms: ms(clock.stage(Stage::WriteConfig)),
            reload_ms: ms(clock.stage(Stage::Reload)),
            catalog_ms: ms(clock.stage(Stage::Catalog)),
            total_ms: ms(total),
            catalog_statements,
            safekeeper_move_ms: ms(clock.part(Part::SafekeeperMove)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_sums_its_phases_and_is_observed_once_they_are_over() {
        let metrics = Metrics::new();
        let mut clock = PhaseClock::default();
        let ms = Duration::from_millis;
        for (phase, took) in [
            (Phase::StartBackupSource, ms(1)),
            (Phase::StartPreparePgdata, ms(10)),
            (Phase::StartWriteConfig, ms(2)),
            (Phase::StartPostgres, ms(30)),
            (Phase::StartDone, ms(0)),
        ] {
            clock.enter(phase, &metrics);
            clock.leave(phase, took);
        }
        clock.finish(Operation::Start, ms(50), &metrics);
        assert_eq!(clock.stage(Stage::PreparePgdata), ms(11));
        assert_eq!(clock.stage(Stage::StartPostgres), ms(32));
        assert_eq!(clock.part(Part::Basebackup), ms(11));
        let text = metrics.encode();
        for (label, count) in [
            ("prepare_pgdata", 1),
            ("start_postgres", 1),
            ("config", 1),
            ("total", 1),
        ] {
            let line = format!(
                "compute_ctl_phase_duration_seconds_count{{operation=\"start\",phase=\"{label}\"}} {count}"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
