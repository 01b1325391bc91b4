//! What the harness observes of the world and puts into the event log for
//! the checkers: the compute's state as a request is sent or answered
//! ([`Seen`]) and the world at the end of a run ([`WorldEnd`]). The large
//! parts (catalog, specs, config text) ride along as [`Snap`]s, which the
//! trace leaves out.

use std::sync::Arc;

use compute_ctl::spec::ComputeSpec;
use compute_ctl::state::ComputeStatus;
use serde::Serialize;

use crate::pgmodel::catalog::CatalogModel;

/// A shared snapshot carried by an event: compared by identity, left out
/// of the trace (its size would dominate it).
#[derive(Debug, Clone)]
pub struct Snap<T>(pub Arc<T>);

impl<T> PartialEq for Snap<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Snap<T> {}

impl<T> std::ops::Deref for Snap<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What a control-plane request is, for the checkers that judge its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// `POST /configure` (no per-request check beyond its deadline).
    Configure,
    /// A skip-flag `/configure` (a storage notification).
    Notify,
    /// A re-send of an operation already applied.
    Resend,
    /// `POST /configure?dry_run=true`.
    DryRun,
    /// `POST /terminate`.
    Terminate,
    /// `POST /configure` of a new operation without the control plane's
    /// token, which auth must refuse with `expect` (400 no token, 401 a
    /// token that does not verify, 403 another compute's), changing
    /// nothing (`checkers/auth.rs`).
    Unauthorized { expect: u16 },
}

/// The last reconfigure as the supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconfigureSeen {
    pub operation_uuid: Option<String>,
    pub total_ms: u64,
    pub catalog_statements: u64,
}

/// The supervisor's state as the harness read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSeen {
    pub status: ComputeStatus,
    pub generation: u64,
    pub applied_generation: u64,
    pub last_reconfigure: Option<ReconfigureSeen>,
}

/// The compute host when a request was sent or answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Which boot of the compute host was current.
    pub boot: u64,
    /// None before the host first booted.
    pub state: Option<StateSeen>,
    /// The storage's catalog (only where a checker compares it: dry runs).
    pub catalog: Option<Snap<CatalogModel>>,
}

/// The world at the end of a run: what the convergence checks judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorldEnd {
    /// None: the compute host never booted.
    pub status: Option<ComputeStatus>,
    pub error: Option<String>,
    /// What a Failed compute failed on (`FailReason::kind`,
    /// `/status.failure_kind`): what the fault ledger matches to a cause.
    pub failure_kind: Option<&'static str>,
    /// The spec in effect.
    #[serde(skip)]
    pub spec: Option<Snap<ComputeSpec>>,
    /// A spec was still pending.
    pub pending: bool,
    /// The last spec applied without the skip flag: what the catalog must hold.
    #[serde(skip)]
    pub catalog_spec: Option<Snap<ComputeSpec>>,
    /// The storage's catalog.
    #[serde(skip)]
    pub catalog: Snap<CatalogModel>,
    /// The config text the running postmaster last loaded.
    #[serde(skip)]
    pub loaded_config: Option<String>,
}
