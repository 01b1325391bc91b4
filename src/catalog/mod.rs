//! Catalog reconciliation: snapshot -> plan -> render -> execute.
//!
//! STUB: filled in by the catalog work (issue 4).

use crate::compute::ComputeParams;
use crate::env::Env;
use crate::metrics::Metrics;
use crate::spec::ComputeSpec;

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogReport {
    pub planned: u64,
    pub executed: u64,
}

/// A failure of catalog work.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Other(String),
}

/// Brings roles, databases and extensions in line with the spec.
pub async fn apply<E: Env>(
    _env: &E,
    _params: &ComputeParams,
    _spec: &ComputeSpec,
    _metrics: &Metrics,
) -> Result<CatalogReport, CatalogError> {
    Err(CatalogError::Other("not implemented".into()))
}
