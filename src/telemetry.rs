//! OpenTelemetry export, at the binary's edge: with
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set (and not empty), the spans of `compute_ctl::spans` go to that
//! collector over OTLP/HTTP (protobuf). Without them nothing is built: no
//! exporter, no batch task, no layer, and the spans' callsites stay
//! disabled (`compute_ctl::spans`).
//!
//! The exporter's batch machinery (a tokio task, its timer, hyper's
//! client) is here and nowhere else; the library only makes spans. The
//! standard variables are read by the SDK itself: `OTEL_BSP_SCHEDULE_DELAY`
//! and the other `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`.

use std::time::Duration;

use anyhow::Context as _;
use compute_ctl::spans;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The variables that turn export on (the traces one wins).
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long the last export at exit may take.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The endpoint variable that asks for export, if any: set and not empty
/// (the OpenTelemetry specification reads an empty value as unset), and
/// `OTEL_SDK_DISABLED` not `true`.
pub fn requested(var: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    ENDPOINT_VARS
        .into_iter()
        .find_map(|name| Some((name, var(name).filter(|v| !v.trim().is_empty())?)))
}

/// The installed exporter; [`Telemetry::shutdown`] exports what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
    /// Which variable turned it on, and its value (for the start log line).
    pub endpoint: (&'static str, String),
}

/// Builds the exporter and its tracer when the environment asks for it
/// ([`layer`] makes the tracing layer of the tracer). Must run inside the
/// tokio runtime (the batch task is spawned on it).
pub fn install(compute_id: Option<&str>) -> anyhow::Result<Option<(Telemetry, SdkTracer)>> {
    let Some(endpoint) = requested(|v| std::env::var(v).ok()) else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .with_context(|| {
            format!(
                "cannot build the OTLP/HTTP exporter for {}={}",
                endpoint.0, endpoint.1
            )
        })?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none()
        && !std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="))
    {
        resource = resource.with_service_name("compute_ctl");
    }
    if let Some(id) = compute_id {
        resource = resource.with_attribute(KeyValue::new("compute.id", id.to_string()));
    }
    // The async-runtime processor: export runs as a task on our tokio
    // runtime, with hyper's client (the SDK's default processor runs a
    // thread of its own and needs a blocking client).
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("compute_ctl");
    Ok(Some((Telemetry { provider, endpoint }, tracer)))
}

/// The layer that turns the spans of [`spans::TARGET`] into OpenTelemetry
/// spans, and warnings and errors inside them into their events.
pub fn layer<S>(tracer: SdkTracer) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    OnlyOurSpans(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false),
    )
}

/// Hands the OpenTelemetry layer the spans of [`spans::TARGET`] only (the
/// log's spans, `http` and `request`, stay out of the trace) and the events
/// at WARN and above. Every other callback finds no OpenTelemetry data on
/// another span and does nothing. A wrapper rather than a per-layer filter,
/// so that the log keeps its global filter as it was (per-layer filters
/// carry each verdict in a thread-local from `enabled` to the creation).
struct OnlyOurSpans<L>(L);

impl<S, L> Layer<S> for OnlyOurSpans<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() == spans::TARGET {
            self.0.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(id, follows, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() <= Level::WARN {
            self.0.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // `set_parent` finds the OpenTelemetry layer through this.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded as is; the inner layer answers for its own types.
        unsafe { self.0.downcast_raw(id) }
    }
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter, within
    /// [`FLUSH_BOUND`]: a compute that lives a second loses none. Call it
    /// from the main thread once the compute has stopped, while the tokio
    /// runtime (whose workers run the export) is still alive: the SDK's
    /// shutdown blocks its caller until the batch task answers.
    pub fn shutdown(self) {
        let (tx, rx) = std::sync::mpsc::channel();
        // The binary's edge: a helper thread only so that a collector that
        // does not answer cannot hold the exit past FLUSH_BOUND.
        let spawned = std::thread::Builder::new()
            .name("otel-flush".into())
            .spawn(move || {
                let _ = tx.send(self.provider.shutdown());
            });
        if let Err(e) = spawned {
            eprintln!("compute_ctl: cannot flush the remaining spans: {e}");
            return;
        }
        match rx.recv_timeout(FLUSH_BOUND) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "exporting the last spans failed"),
            Err(_) => tracing::warn!(
                "the collector did not take the last spans within {FLUSH_BOUND:?}; they are lost"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            set.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_requested_by_a_non_empty_endpoint_only() {
        assert_eq!(requested(vars(&[])), None);
        assert_eq!(
            requested(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            None
        );
        assert_eq!(
            requested(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])),
            Some(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318".into()))
        );
        assert_eq!(
            requested(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://t:4318/v1/traces"
                ),
            ])),
            Some((
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://t:4318/v1/traces".into()
            ))
        );
        assert_eq!(
            requested(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ])),
            None
        );
    }
}
