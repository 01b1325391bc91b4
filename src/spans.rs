//! The spans exported over OpenTelemetry (README "Tracing").
//!
//! They all carry the tracing target [`TARGET`]. The binary's log filter
//! turns that target off unless it installs the OpenTelemetry layer (when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set), which takes only these spans: without an
//! exporter every one of these callsites is disabled, so a span costs one
//! cached interest check and nothing is recorded, allocated or timed; the
//! code that only exists for spans (the request's trace context, the
//! operation's parent) first asks [`exported`]. The simulator installs no
//! such layer.
//!
//! The spans, outermost first:
//! - `POST /configure` (any route, `{method} {route}`; kind server): a
//!   request that carries a W3C `traceparent`, or that is not a GET/HEAD;
//!   a child of the caller's span (`http/trace_context.rs`);
//! - `start`, `reconfigure`: one operation of the supervisor, a child of
//!   the request that submitted its spec (`compute/trace.rs`), with the
//!   phase durations as attributes (`write_config_ms`, ...);
//! - one span per phase, named as the phase (`reconfigure.write_config`,
//!   `reconfigure.reload`, `reconfigure.catalog`, `start.prepare_pgdata`,
//!   ...: the names of `Processes::failpoint`);
//! - `catalog.batch`: one run of catalog statements on one session
//!   (`catalog/execute.rs`).

/// The tracing target of every exported span.
pub const TARGET: &str = "compute_ctl::otel";

static EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: the binary installed its OpenTelemetry
/// layer ([`set_exported`]). One relaxed load, for the code that exists
/// only for spans (the request's trace context, the operation's parent).
pub fn exported() -> bool {
    EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Says that a layer exports the spans of [`TARGET`]: the binary's edge
/// calls it once, when it installs the layer. The simulator never does.
pub fn set_exported() {
    EXPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
}
