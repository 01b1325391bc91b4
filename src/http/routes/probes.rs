//! `GET /health` (the process is alive and serving) and `GET /ready`
//! (status `running`, a replica within `--max-ready-lag` of its source
//! ([`crate::health::lag_verdict`]), a primary with safekeepers holding its
//! quorum ([`crate::health::quorum_verdict`]), and Postgres accepting connections,
//! probed with a fresh supervisor session and `SELECT 1` under a short
//! deadline: `pg::probe::ready`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::compute::TerminateMode;
use crate::env::Env;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::pg;
use crate::state::{ComputeStatus, WireStatus};

/// How long the readiness probe may take in all.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of both probes when they pass.
#[derive(Debug, Serialize)]
pub struct ProbeBody {
    pub ok: bool,
    pub status: WireStatus,
}

fn wire(st: &crate::compute::ComputeState) -> WireStatus {
    WireStatus {
        status: st.status,
        immediate: st.terminate_mode == Some(TerminateMode::Immediate),
    }
}

/// `GET /health`: 200 whenever the API answers.
pub async fn health<E: Env>(State(state): State<AppState<E>>) -> Json<ProbeBody> {
    Json(ProbeBody {
        ok: true,
        status: wire(&state.compute.subscribe().borrow()),
    })
}

/// `GET /ready`: 200 when running and Postgres answers, else 503 with the reason.
pub async fn ready<E: Env>(State(state): State<AppState<E>>) -> Result<Json<ProbeBody>, ApiError> {
    let compute = &state.compute;
    let status = compute.subscribe().borrow().status;
    let wire_status = wire(&compute.subscribe().borrow());
    let unavailable = |reason: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    if status != ComputeStatus::Running {
        return Err(unavailable(format!(
            "not ready: the compute is {status}, not running"
        )));
    }
    if let Some(max) = compute.params().max_ready_lag {
        let replication = compute.subscribe().borrow().replication.clone();
        if let Some(why) = crate::health::lag_verdict(max, replication.as_ref()) {
            return Err(unavailable(format!("not ready: {why}")));
        }
    }
    let quorum = compute.subscribe().borrow().safekeepers.clone();
    if let Some(why) =
        crate::health::quorum_verdict(quorum.as_ref().map(|s| (&s.quorum, &s.members[..])))
    {
        return Err(unavailable(format!("not ready: {why}")));
    }
    match pg::probe::ready(compute.env(), &compute.params().conn, READY_PROBE_TIMEOUT).await {
        Ok(()) => Ok(Json(ProbeBody {
            ok: true,
            status: wire_status,
        })),
        Err(e) => Err(unavailable(format!("not ready: {e}"))),
    }
}
