//! `GET /status`: what the compute is doing. Reads the watch channel only,
//! so it answers at once even while a long configure runs.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::compute::ComputeState;
use crate::compute::TerminateMode;
use crate::env::Env;
use crate::http::{AppState, rfc3339};
use crate::state::{ComputeStatus, WireStatus};

/// The body of `/status` (also returned by `/configure` and `/terminate`):
/// Neon's `ComputeState` (`status`, `start_time`, `last_active`, `error`,
/// `tenant`, `timeline`) and what we add.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    /// Neon's status names (`termination_pending_fast`, ...).
    pub status: WireStatus,
    /// When compute_ctl started, or, for a compute started empty, when its
    /// first spec arrived (as Neon).
    #[serde(serialize_with = "rfc3339::serialize")]
    pub start_time: SystemTime,
    /// Last client activity seen by the activity monitor; null before any.
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub last_active: Option<SystemTime>,
    /// Why the compute failed (status `failed`).
    pub error: Option<String>,
    /// What failed, as a stable name (`FailReason::kind`: `base_backup`,
    /// `quorum`, `catalog`, ...); null unless `failed`.
    pub failure_kind: Option<&'static str>,
    /// `operation_uuid` of the spec in effect (or being applied).
    pub operation_uuid: Option<String>,
    /// Settings that changed but take effect only after a restart.
    pub pending_restart: Vec<String>,
    /// The spec's `tenant_id` (Neon's name here is `tenant`).
    pub tenant: Option<String>,
    /// The spec's `timeline_id` (Neon's name here is `timeline`).
    pub timeline: Option<String>,
    /// JSON paths of the spec's fields this compute does not use.
    pub ignored_spec_fields: Vec<String>,
    /// Storage as this compute sees it (commit LSN, base backup, and for a
    /// replica or static compute its upstream, receive/replay LSNs, replay
    /// lag, streaming or why not); null for a primary without safekeepers.
    pub replication: Option<crate::storage::ReplicationStatus>,
    /// How far the last catalog apply got when a terminate or the
    /// postmaster's exit cut it short; null otherwise.
    pub catalog_interrupted: Option<crate::compute::CatalogInterrupted>,
    /// A primary with safekeepers: each safekeeper's `name`, `state`
    /// (`streaming`, `catching_up`, `unreachable`, `diverged`), `reason`,
    /// `flush_lsn` and `replay_lsn`; null otherwise.
    pub safekeepers: Option<Vec<crate::storage::SafekeeperStatus>>,
    /// The quorum commits wait for (`q of n`) and whether it holds now.
    pub quorum: Option<crate::storage::QuorumStatus>,
    /// The last configure whose config Postgres refused (pg_file_settings)
    /// (Postgres' error lines; the previous config was put back); null once
    /// a configure applies.
    pub config_refused: Option<crate::compute::ConfigRefused>,
    /// What the running major deprecates in the spec in effect, once per
    /// role (PostgreSQL 18: md5 passwords).
    pub deprecations: Vec<String>,
    /// The major of the Postgres binary; null until it was read.
    pub pg_major: Option<u32>,
    /// Postgres' TLS pair in force and the last refused rotation (absent without --tls-cert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::compute::TlsStatus>,
}

impl StatusBody {
    pub fn from_state(st: &ComputeState) -> Self {
        let spec = st.spec.as_deref();
        // Neon's order for a launch spec: init, never configuration_pending
        // (Neon's control plane and neon_local read that as a failed start).
        let status = match st.status {
            ComputeStatus::ConfigurationPending if st.start_spec && !st.postgres_started => {
                ComputeStatus::Init
            }
            s => s,
        };
        Self {
            status: WireStatus {
                status,
                immediate: st.terminate_mode == Some(TerminateMode::Immediate),
            },
            start_time: st.start_time,
            last_active: st.last_active,
            error: st.error.clone(),
            failure_kind: st.failure.as_ref().map(crate::compute::FailReason::kind),
            operation_uuid: spec.and_then(|s| s.operation_uuid.clone()),
            pending_restart: st.pending_restart.clone(),
            tenant: spec.and_then(|s| s.tenant_id.clone()),
            timeline: spec.and_then(|s| s.timeline_id.clone()),
            ignored_spec_fields: spec.map(|s| s.ignored_fields.clone()).unwrap_or_default(),
            replication: st.replication.clone(),
            catalog_interrupted: st.catalog_interrupted.clone(),
            safekeepers: st.safekeepers.as_ref().map(|s| s.members.clone()),
            quorum: st.safekeepers.as_ref().map(|s| s.quorum.clone()),
            config_refused: st.config_refused.clone(),
            deprecations: spec
                .map(|s| crate::compute::deprecations(s, st.pg_major))
                .unwrap_or_default(),
            pg_major: st.pg_major,
            tls: st.tls.clone(),
        }
    }
}

/// The handler.
pub async fn get<E: Env>(State(state): State<AppState<E>>) -> Json<StatusBody> {
    let rx = state.compute.subscribe();
    let body = StatusBody::from_state(&rx.borrow());
    Json(body)
}
