//! `GET /metrics` (Prometheus/OpenMetrics text) and `GET /metrics.json`
//! (startup timings and the last reconfigure's phases).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::compute::{ReconfigureTimings, StartupTimings};
use crate::env::Env;
use crate::http::AppState;

/// The content type of the text exposition `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type without OpenMetrics negotiation (Neon's contract says
/// `text/plain`; the exposition reads as the Prometheus text format).
pub const PLAIN_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: OpenMetrics when the scraper asks for it (`Accept`, as
/// Prometheus does), else the same text as `text/plain`.
pub async fn text<E: Env>(State(state): State<AppState<E>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let ct = if openmetrics { OPENMETRICS } else { PLAIN_TEXT };
    let mut resp = state.compute.metrics().encode().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
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
