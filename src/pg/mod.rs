//! Postgres itself: PGDATA preparation, config files, the postmaster process.
//!
//! STUB: filled in by the lifecycle work (issue 3).

mod connect;

pub use connect::{APPLICATION_NAME, ConnectError, connect, session_options};

use crate::compute::ComputeParams;
use crate::env::Env;
use crate::spec::ComputeSpec;

/// A failure while preparing or running Postgres.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Other(String),
}

/// Recreates PGDATA from initdb or a base backup.
pub async fn prepare_pgdata<E: Env>(
    _env: &E,
    _params: &ComputeParams,
    _spec: &ComputeSpec,
) -> Result<(), PgError> {
    Err(PgError::Other("not implemented".into()))
}

/// Writes `postgresql.conf` and `pg_hba.conf` atomically.
pub async fn write_config<E: Env>(
    _env: &E,
    _params: &ComputeParams,
    _spec: &ComputeSpec,
) -> Result<(), PgError> {
    Err(PgError::Other("not implemented".into()))
}

/// Spawns the postmaster.
pub fn spawn_postgres<E: Env>(_env: &E, _params: &ComputeParams) -> Result<E::Child, PgError> {
    Err(PgError::Other("not implemented".into()))
}

/// Waits until Postgres accepts connections.
pub async fn wait_ready<E: Env>(_env: &E, _params: &ComputeParams) -> Result<(), PgError> {
    Err(PgError::Other("not implemented".into()))
}

/// Settings that changed between two specs but need a restart.
pub fn pending_restart(_previous: Option<&ComputeSpec>, _next: &ComputeSpec) -> Vec<String> {
    Vec::new()
}
