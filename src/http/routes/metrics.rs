//! `GET /metrics` (Prometheus/OpenMetrics text) and `GET /metrics.json`
//! (startup timings and the last reconfigure's phases).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::compute::{ReconfigureTimings, StartupTimings};
use crate::env::Env;
use crate::http::AppState;

/// The content type of the text exposition `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub async fn text<E: Env>(State(state): State<AppState<E>>) -> Response {
    let mut resp = state.compute.metrics.encode().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    resp
}

/// The body of `/metrics.json`: startup phases at top level (as Neon), and
/// the last reconfigure (null before the first).
#[derive(Debug, Serialize)]
pub struct MetricsJson {
    #[serde(flatten)]
    pub startup: StartupTimings,
    pub last_reconfigure: Option<ReconfigureTimings>,
}

/// `GET /metrics.json`.
pub async fn json<E: Env>(State(state): State<AppState<E>>) -> Json<MetricsJson> {
    let st = state.compute.state();
    Json(MetricsJson {
        startup: st.startup,
        last_reconfigure: st.last_reconfigure,
    })
}
