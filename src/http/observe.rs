//! Counts every response in the Prometheus registry (by route pattern,
//! method and status code) and writes one access-log line per request.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::env::Env;

/// Route label for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A bounded method label (unknown methods share one label value).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware.
pub async fn layer<E: Env>(State(state): State<AppState<E>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let method = method_label(req.method());
    // The request's start, for timelines read off the log
    // (`scripts/notify-stages.py`); "http response" ends it.
    tracing::debug!(route, "http request");
    // Neon's request log names `method`, `uri` and `status` (its tests grep
    // the log for e.g. `/configure`).
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        status = tracing::field::Empty
    );
    let env = state.compute.env();
    let t0 = env.now();
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let code = resp.status().as_u16();
    span.record("status", code);
    let _entered = span.enter();
    state
        .compute
        .metrics()
        .count_http_request(&route, method, code);
    let elapsed_ms = crate::compute::ms(env.now() - t0);
    // Polling (GET 2xx) is frequent; keep it out of the default log level.
    if method == "GET" && code < 400 {
        tracing::debug!(route, status = code, elapsed_ms, "http response");
    } else {
        tracing::info!(route, status = code, elapsed_ms, "http response");
    }
    resp
}
