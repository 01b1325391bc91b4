//! Issue 26: tracing costs nothing when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! unset. Two computes with the same 10-role spec, one with the OTEL
//! variables removed from its environment, one exporting to a local sink
//! that accepts OTLP/HTTP (every 100 ms, so that exports run while the
//! notifies are measured). Each notify is the notify row's (POST →
//! 200 → seen by a held session), and each compute also gets its by-hand
//! reload (the notify row's floor) in the same rounds; the four alternate.
//! The row is unset over exporting (unset does strictly less: ≈ 1.0 means
//! the span code, even when on, costs nothing a notify can measure); the
//! ratio of each to its by-hand floor is beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::cases::{Plan, ports};
use crate::compute::{Compute, SUPERUSER};
use crate::postgres::{self, Watcher, Write};
use crate::specs;
use crate::stats::{CaseResult, Summary};

const LIMIT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A local OTLP/HTTP receiver: answers every POST with an empty
/// `ExportTraceServiceResponse` and counts them.
async fn sink() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let port = crate::ports::free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let posts = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let posts = posts.clone();
            move |_body: axum::body::Bytes| async move {
                posts.fetch_add(1, Ordering::Relaxed);
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, posts))
}

/// One compute of the pair, with its held session and its samples.
struct Side {
    c: Compute,
    watcher: Watcher,
    base: serde_json::Value,
    counter: usize,
    ours: Vec<f64>,
    floor: Vec<f64>,
}

impl Side {
    async fn start(plan: Plan, tag: &str, vars: &[(&str, Option<&str>)]) -> anyhow::Result<Self> {
        let base = specs::sized(10, plan.dbs, 0, &format!("tracing-{tag}"));
        let (pg, http) = ports();
        let mut c = Compute::spawn_env(&base, pg, http, vars)?;
        c.wait_running(Duration::from_secs(600))
            .await
            .with_context(|| format!("the {tag} compute"))?;
        let watcher = Watcher::connect(pg, SUPERUSER).await?;
        Ok(Self {
            c,
            watcher,
            base,
            counter: 0,
            ours: Vec::new(),
            floor: Vec::new(),
        })
    }

    fn next_value(&mut self) -> String {
        self.counter += 1;
        format!("{}kB", 4096 + self.counter)
    }

    async fn notify(&mut self) -> anyhow::Result<()> {
        let value = self.next_value();
        let op = format!("tracing-{}", self.counter);
        let body = Compute::configure_body(&specs::notify(&self.base, &op, &value))?;
        let t = Instant::now();
        let (code, answer) = self.c.configure_raw(body).await?;
        if code != 200 {
            bail!("notify answered {code}: {answer}");
        }
        self.watcher.wait_visible("work_mem", &value, LIMIT).await?;
        self.ours.push(ms(t.elapsed()));
        Ok(())
    }

    async fn by_hand(&mut self) -> anyhow::Result<()> {
        let value = self.next_value();
        let t = Instant::now();
        postgres::set_and_reload(&self.c.pgdata, "work_mem", &value, Write::Atomic)?;
        self.watcher.wait_visible("work_mem", &value, LIMIT).await?;
        self.floor.push(ms(t.elapsed()));
        Ok(())
    }
}

pub async fn tracing_cost(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let (sink_port, posts) = sink().await?;
    let endpoint = format!("http://127.0.0.1:{sink_port}");
    let unset_vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    ];
    let export_vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(endpoint.as_str())),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
        ("OTEL_SDK_DISABLED", None),
        ("OTEL_BSP_SCHEDULE_DELAY", Some("100")),
    ];
    let mut unset = Side::start(plan, "unset", &unset_vars).await?;
    let mut export = Side::start(plan, "export", &export_vars).await?;
    for i in 0..plan.notify_reps {
        // The four turns in an order that rotates every repetition.
        for k in 0..4 {
            match (i + k) % 4 {
                0 => unset.notify().await?,
                1 => export.notify().await?,
                2 => unset.by_hand().await?,
                _ => export.by_hand().await?,
            }
        }
    }
    // The exporting side did export (spans reached the sink).
    let deadline = Instant::now() + LIMIT;
    while posts.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            bail!("the exporting compute sent no OTLP request to the sink");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (u, e) = (Summary::of(&unset.ours), Summary::of(&export.ours));
    let (uf, ef) = (Summary::of(&unset.floor), Summary::of(&export.floor));
    let mut row = CaseResult::new(
        "tracing_cost",
        "notify 10 roles: unset / exporting",
        u,
        Some(e),
    )
    .with_extra(json!({
        "compared": "ours = the 10-role notify with the OTEL variables unset; floor column = the same notify on a compute exporting OTLP/HTTP to a local sink every 100 ms",
        "unset_over_its_by_hand_floor": u.median_ms / uf.median_ms,
        "exporting_over_its_by_hand_floor": e.median_ms / ef.median_ms,
        "by_hand_floor_ms": {"unset_compute": uf.median_ms, "exporting_compute": ef.median_ms},
        "otlp_posts_received": posts.load(Ordering::Relaxed),
    }));
    row.target = "report: ~1.0 (unset <= exporting)";
    Ok(vec![row])
}
