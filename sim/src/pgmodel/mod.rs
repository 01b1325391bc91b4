//! The simulated Postgres as data, with no host and no world state: the
//! catalog it holds, the SQL dialect and `postgresql.conf` it parses, and
//! the kinds of statements and postmaster phases the events name. The
//! world's Postgres (`world::pg`) runs on it; checkers compare against it.

pub mod catalog;
pub mod durable;
pub mod guc;
pub mod ops;
pub mod sql;

/// What a statement was, for the invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StmtKind {
    /// DDL on roles, databases, extensions.
    CatalogWrite,
    /// The catalog snapshot queries.
    CatalogRead,
    /// `SELECT pg_reload_conf()`.
    Reload,
    /// The activity monitor's `pg_stat_activity` poll.
    Monitor,
    /// Anything else (readiness probes, client load).
    Other,
    /// Not understood.
    Invalid,
}

impl StmtKind {
    /// Catalog work or a reload through SQL: what a skip-flag notify must not do.
    pub fn is_notify_forbidden(self) -> bool {
        matches!(
            self,
            StmtKind::CatalogWrite | StmtKind::CatalogRead | StmtKind::Reload
        )
    }
}

/// Where a planted Postgres crash happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgPhase {
    Startup,
    Query,
    Reload,
}
