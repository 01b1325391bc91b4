//! W3C trace context: a request that carries a `traceparent` (the control
//! plane's span) continues that trace. The request's server span, named
//! `{method} {route}` (`POST /configure`), is a child of the caller's span,
//! and the operation a `/configure` submits is a child of it
//! (`compute/trace.rs` keeps the span current at submission).
//!
//! Only when spans are exported (`crate::spans`): otherwise the layer
//! passes the request through after one flag load. GET and HEAD
//! requests without a `traceparent` (probes, `/status` polling) get no span.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::observe::UNMATCHED;
use super::request_id::RequestId;
use crate::spans::{self, TARGET};

/// The W3C header naming the caller's span.
pub const TRACEPARENT: &str = "traceparent";

/// The caller's span context from `traceparent` (and `tracestate`), when
/// the header is there and well formed; a malformed one is ignored (the
/// request's span then starts a trace of its own).
pub fn caller_context(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    headers.get(TRACEPARENT)?;
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The middleware.
pub async fn layer(req: Request, next: Next) -> Response {
    if !spans::exported() {
        return next.run(req).await;
    }
    let parent = caller_context(req.headers());
    if parent.is_none() && matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.as_str());
    let span = tracing::info_span!(target: TARGET, "http.server",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        url.path = req.uri().path(),
        request_id,
        http.response.status_code = Empty,
        otel.status_code = Empty);
    if let Some(cx) = parent {
        // Fails only when no OpenTelemetry layer sees the span, which
        // `spans::exported` ruled out.
        let _ = span.set_parent(cx);
    }
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", resp.status().as_u16());
    if resp.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        h
    }

    #[test]
    fn a_valid_traceparent_names_the_callers_span() {
        let cx = caller_context(&headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ))
        .expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote());
        assert!(sc.is_sampled());
    }

    #[test]
    fn a_missing_or_malformed_traceparent_is_ignored() {
        assert!(caller_context(&HeaderMap::new()).is_none());
        for junk in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(caller_context(&headers(junk)).is_none(), "{junk:?}");
        }
    }
}
