//! OpenTelemetry traces (issue 26, item 3), end to end: the real binary on
//! real Postgres exports to a small OTLP/HTTP receiver run by the test,
//! which decodes every `ExportTraceServiceRequest` with the
//! `opentelemetry-proto` types.
//!
//! - a `POST /configure` carrying a W3C `traceparent` continues the
//!   caller's trace: its server span is a child of the caller's span, the
//!   `reconfigure` a child of it with the phase durations as attributes,
//!   each phase a span inside it, each catalog batch inside its phase; a
//!   notify has no catalog phase; the start is a trace of its own;
//! - spans still queued at SIGTERM are exported before the exit;
//! - with the variables unset (empty) nothing connects to the receiver,
//!   which listens on OTLP's default port, where an exporter built without
//!   an endpoint would send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::{Value, json};

use crate::support::compute::{Compute, ComputeOpts, Reply};
use crate::support::ports::free_port;
use crate::support::{fixture_op, md5_hex, poll_until, wait_for};

/// The caller's (the control plane's) trace and span.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Got {
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: i32,
    /// The span status: 0 unset, 1 ok, 2 error.
    status: i32,
    attrs: BTreeMap<String, String>,
    service: Option<String>,
    start_ns: u64,
    end_ns: u64,
}

impl Got {
    fn attr(&self, key: &str) -> &str {
        self.attrs
            .get(key)
            .unwrap_or_else(|| panic!("span {} has no attribute {key}: {self:?}", self.name))
    }

    fn ms(&self, key: &str) -> u64 {
        self.attr(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} of {} is not a number", self.name))
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The receiver: what it decoded, and how many connections it accepted.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
    accepted: Arc<AtomicUsize>,
}

impl Receiver {
    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans named `name`.
    fn named(&self, name: &str) -> Vec<Got> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    fn children(&self, of: &Got) -> Vec<Got> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace == of.trace && s.parent == of.id)
            .collect()
    }
}

async fn export(State(r): State<Receiver>, body: Bytes) -> impl IntoResponse {
    let req = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut got = Vec::new();
    for rs in req.resource_spans {
        let service = rs.resource.as_ref().and_then(|res| {
            res.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
        });
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Got {
                    trace: hex::encode(&s.trace_id),
                    id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    status: s.status.as_ref().map_or(0, |st| st.code),
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    service: service.clone(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    r.spans.lock().unwrap().extend(got);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// A listener that counts the connections it accepts.
struct Counting {
    inner: tokio::net::TcpListener,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for Counting {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let conn = axum::serve::Listener::accept(&mut self.inner).await;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        conn
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves OTLP/HTTP's `POST /v1/traces` on 127.0.0.1:`port`.
async fn receiver(port: u16) -> Receiver {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("the OTLP receiver cannot listen on 127.0.0.1:{port}: {e}"));
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(r.clone());
    let listener = Counting {
        inner: listener,
        accepted: r.accepted.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    r
}

/// `fixtures/spec.json` as operation `uuid`, with one more role (`carol`)
/// so that the catalog has work, and the skip flag as given.
fn spec(uuid: &str, skip: bool) -> Value {
    let mut s = fixture_op("spec.json", uuid);
    s["skip_pg_catalog_updates"] = skip.into();
    s["cluster"]["roles"].as_array_mut().unwrap().push(
        json!({"name": "carol", "encrypted_password": md5_hex("c", "carol"), "options": null}),
    );
    s
}

/// `POST /configure` as a control plane in trace [`TRACE`], span `caller`.
async fn configure_traced(c: &Compute, spec: &Value, caller: &str) -> Reply {
    let resp = c
        .client
        .post(c.url("/configure"))
        .header("traceparent", format!("00-{TRACE}-{caller}-01"))
        .json(&json!({ "spec": spec }))
        .send()
        .await
        .expect("POST /configure");
    Reply::read(resp).await
}

fn otel_env(port: u16, delay_ms: u64) -> Vec<(String, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), delay_ms.to_string()),
        ("OTEL_SERVICE_NAME".into(), "compute-under-test".into()),
    ]
}

/// The server span of the request whose caller was `caller`, once exported.
async fn server_span(r: &Receiver, caller: &str) -> Got {
    let found = poll_until(Duration::from_secs(30), || async {
        r.named("POST /configure")
            .into_iter()
            .find(|s| s.parent == caller)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "no server span of the request from span {caller} within 30 s; received: {:#?}",
            r.spans()
        )
    })
}

/// The child of `parent` named `name`, once exported.
async fn child(r: &Receiver, parent: &Got, name: &str) -> Got {
    let what = format!("span {name} under {} {}", parent.name, parent.id);
    wait_for(Duration::from_secs(30), &what, || async {
        r.children(parent).into_iter().find(|s| s.name == name)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_continues_the_callers_trace() {
    crate::need_postgres!();
    let port = free_port();
    let r = receiver(port).await;
    let mut opts = ComputeOpts::with_spec(spec("start-1", false));
    opts.env = otel_env(port, 50);
    let c = Compute::start(opts);
    c.wait_running().await;
    c.wait_log("exporting traces over OTLP/HTTP", Duration::from_secs(5))
        .await;

    // A full reconfigure from the control plane's span.
    let mut full = spec("reconfigure-1", false);
    full["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "dave", "encrypted_password": null, "options": null}));
    let reply = configure_traced(&c, &full, CALLER).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let server = server_span(&r, CALLER).await;
    assert_eq!(
        server.trace, TRACE,
        "the request continues the caller's trace"
    );
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER: {server:?}");
    assert_eq!(server.attr("http.route"), "/configure");
    assert_eq!(server.attr("http.request.method"), "POST");
    assert_eq!(server.attr("http.response.status_code"), "200");
    assert_eq!(server.service.as_deref(), Some("compute-under-test"));

    let reconfigure = child(&r, &server, "reconfigure").await;
    assert_eq!(reconfigure.attr("operation_uuid"), "reconfigure-1");
    assert_eq!(reconfigure.attr("skip_pg_catalog_updates"), "false");
    assert_eq!(reconfigure.status, 1, "STATUS_CODE_OK: {reconfigure:?}");
    assert!(reconfigure.ms("catalog_statements") >= 1, "{reconfigure:?}");
    let total = reconfigure.ms("total_ms");
    let phases_ms = reconfigure.ms("write_config_ms")
        + reconfigure.ms("reload_ms")
        + reconfigure.ms("catalog_ms");
    assert!(
        phases_ms <= total + 3,
        "phases {phases_ms} ms within total {total} ms"
    );
    // It may end a little after the answer (the request's end): the
    // supervisor closes it once the state says Running.
    assert!(reconfigure.start_ns >= server.start_ns);

    let mut last_end = reconfigure.start_ns;
    for phase in ["write_config", "reload", "catalog"] {
        let name = format!("reconfigure.{phase}");
        let p = child(&r, &reconfigure, &name).await;
        assert_eq!(p.attr("operation"), "reconfigure");
        assert_eq!(p.attr("phase"), phase);
        assert!(
            p.start_ns >= last_end,
            "{name} starts after the phase before it"
        );
        assert!(p.end_ns >= p.start_ns && p.end_ns <= reconfigure.end_ns);
        last_end = p.end_ns;
        if phase == "catalog" {
            let batch = child(&r, &p, "catalog.batch").await;
            assert!(batch.ms("executed") >= 1, "{batch:?}");
            assert_eq!(batch.attr("failed"), "0");
        }
    }

    // A notify, from another span of the caller: no catalog phase.
    let notify_caller = "00f067aa0ba902b8";
    let reply = configure_traced(&c, &spec("notify-1", true), notify_caller).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let server = server_span(&r, notify_caller).await;
    let notify = child(&r, &server, "reconfigure").await;
    assert_eq!(notify.attr("skip_pg_catalog_updates"), "true");
    assert_eq!(notify.ms("catalog_statements"), 0);
    child(&r, &notify, "reconfigure.reload").await;
    let names: Vec<String> = r.children(&notify).into_iter().map(|s| s.name).collect();
    assert!(
        !names.iter().any(|n| n == "reconfigure.catalog"),
        "a notify has no catalog phase: {names:?}"
    );

    // The launch spec's start: a trace of its own, with its phases.
    let start = wait_for(Duration::from_secs(30), "the start's span", || async {
        r.named("start").into_iter().next()
    })
    .await;
    assert_ne!(start.trace, TRACE);
    assert!(
        start.parent.is_empty(),
        "a launch spec's start is a root: {start:?}"
    );
    assert!(start.ms("total_startup_ms") >= start.ms("start_postgres_ms"));
    for phase in [
        "start.prepare_pgdata",
        "start.write_config",
        "start.start_postgres",
        "start.catalog",
    ] {
        child(&r, &start, phase).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_at_sigterm_are_exported_before_the_exit() {
    crate::need_postgres!();
    let port = free_port();
    let r = receiver(port).await;
    let mut opts = ComputeOpts::with_spec(spec("start-1", false));
    // No scheduled export during the test: only the flush at exit sends.
    opts.env = otel_env(port, 600_000);
    let c = Compute::start(opts);
    c.wait_running().await;
    let reply = configure_traced(&c, &spec("notify-1", true), CALLER).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(r.spans().is_empty(), "nothing exported before the exit");
    c.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = c.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    let server = server_span(&r, CALLER).await;
    child(&r, &server, "reconfigure").await;
    assert_eq!(r.named("start").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_without_the_variables() {
    crate::need_postgres!();
    // OTLP/HTTP's default endpoint: where an exporter installed without an
    // endpoint would send (outside the test port range on purpose).
    let r = receiver(4318).await;
    let mut opts = ComputeOpts::with_spec(spec("start-1", false));
    // Empty reads as unset (the OpenTelemetry specification), and wins
    // over whatever the test runner's environment has.
    opts.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), String::new()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(), String::new()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "10".into()),
    ];
    let c = Compute::start(opts);
    c.wait_running().await;
    let reply = configure_traced(&c, &spec("reconfigure-1", false), CALLER).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    c.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = c.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    // Everything an exporter would have sent, it sent before the exit (the
    // flush at shutdown), so there is nothing left to wait for.
    assert_eq!(
        r.accepted.load(Ordering::SeqCst),
        0,
        "no connection to the collector"
    );
    assert!(r.spans().is_empty());
    assert!(!c.log().contains("exporting traces"), "{}", c.log());
}
