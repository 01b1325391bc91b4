//! Durations of the phases of a start and of a reconfigure.

use serde::Serialize;

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
