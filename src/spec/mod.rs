//! The compute spec: what the control plane asks this compute to be.
//!
//! Field names follow Neon's `ComputeSpec` so that a control plane written for
//! Neon can drive this supervisor unchanged. Unknown fields are ignored.
//! [`model`] holds the types, [`validate`] checks a parsed spec before any of
//! it reaches Postgres.

mod catalog_list;
mod endpoint;
mod lsn;
mod model;
mod quorum_names;
pub mod role_options;
mod safekeeper_generation;
mod validate;

pub use catalog_list::CatalogList;
pub use endpoint::{Endpoint, EndpointError, redact_connstr};
pub use lsn::{Lsn, LsnParseError};
pub use model::*;
pub use quorum_names::{JointQuorum, majority, safekeeper_name, synchronous_standby_names};
pub use safekeeper_generation::{same_members, stale_safekeepers};
pub use validate::{
    MAX_NAME_BYTES, SpecProblem, ValidationContext, is_guc_name, is_md5_hex, mode_name, validate,
    validate_advertise, validate_change,
};

/// Why a spec could not be turned into something we can apply.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not valid JSON for a compute spec: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("spec is invalid ({} problem(s)): {}", .0.len(), SpecProblem::join(.0))]
    Invalid(Vec<SpecProblem>),
}

impl ComputeSpec {
    /// Parses a spec from JSON text and validates it.
    pub fn parse_and_validate(json: &str, ctx: &ValidationContext) -> Result<Self, SpecError> {
        let spec: ComputeSpec = serde_json::from_str(json)?;
        let problems = validate(&spec, ctx);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(SpecError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests;
