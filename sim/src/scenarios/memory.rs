//! Memory pressure under autoscaling: the compute runs the real vm-monitor
//! (`compute_ctl::vm_monitor`) on its cgroup; client load grows the
//! cgroup's usage; an autoscaler-agent on the control-plane host answers
//! upscale requests late, drops and re-opens its connection, and asks for
//! downscales in the middle of the pressure.
//!
//! Invariants, checked as the agent sees the messages:
//! - an accepted downscale leaves its threshold at or above the lowest
//!   usage from a second before the request was sent until its answer
//!   arrived, plus the 100 MiB buffer (the monitor decides somewhere in
//!   between: a held or slow link delays the answer, not the decision);
//! - once usage is at or over the threshold, an `UpscaleRequest` arrives
//!   within 1 s of simulated time (and again within each second it stays
//!   there), and never two less than a second apart;
//! - a (re)connecting agent is served: the version answer and the echo of
//!   its health check, each within 2 s.
//!
//! A network fault or a host crash excuses what it interrupts.

use std::collections::VecDeque;
use std::time::Duration;

use compute_ctl::vm_monitor::rules;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::driver::{self, BOOT_USAGE, MEM_TOTAL, now_us, timeout};
use super::{Body, Driver, Topology, base_shape, load};
use crate::names::{COMPUTE, VM_MONITOR_PORT};

const MIB: u64 = rules::MIB;
const SEC_US: u64 = 1_000_000;
/// Messages between hosts arrive at step boundaries (20 ms) plus latency.
const NET_SLACK_US: u64 = 50_000;
/// How long a (re)connecting agent may wait for each answer.
const SERVE_DEADLINE: Duration = Duration::from_secs(2);
/// One step of the load: 100 ms.
const TICK_US: u64 = 100_000;

/// The compute runs with `AUTOSCALING` set.
pub fn autoscaled(_: u64) -> Topology {
    Topology {
        autoscaling: true,
        ..Topology::default()
    }
}

type Sink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<turmoil::net::TcpStream>,
    Message,
>;

/// The test's autoscaler-agent: a sink, and the messages received with
/// their arrival time.
struct Agent {
    tx: Sink,
    rx: mpsc::UnboundedReceiver<(u64, Value)>,
    next_id: u64,
    boot: u64,
    since: u64,
}

/// Whether a fault may explain what went wrong since `since`.
fn excused(d: &Driver, since: u64, boot: u64) -> bool {
    d.excuses_lost_request(since) || d.boot() != boot || d.supervisor_exited() || d.compute_gone()
}

impl Agent {
    /// Connects, negotiates and checks that it is served; `None` when the
    /// compute cannot be reached (yet).
    async fn connect(d: &Driver) -> Option<Self> {
        let boot = d.boot();
        let t0 = now_us();
        let connect = turmoil::net::TcpStream::connect((COMPUTE, VM_MONITOR_PORT));
        let stream = timeout(SERVE_DEADLINE, connect).await.ok()?.ok()?;
        let url = format!("ws://{COMPUTE}:{VM_MONITOR_PORT}/monitor");
        let (ws, _) = timeout(SERVE_DEADLINE, tokio_tungstenite::client_async(url, stream))
            .await
            .ok()?
            .ok()?;
        let (tx, mut read) = ws.split();
        let (in_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(m)) = read.next().await {
                if let Message::Text(t) = m {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        let _ = in_tx.send((now_us(), v));
                    }
                }
            }
        });
        let mut a = Self {
            tx,
            rx,
            next_id: 0,
            boot,
            since: t0,
        };
        let range = Message::text(json!({"min": 1, "max": 1}).to_string());
        timeout(SERVE_DEADLINE, a.tx.send(range)).await.ok()?.ok()?;
        match a.recv_within(SERVE_DEADLINE).await {
            Some((_, v)) if v == json!({"version": 1}) => {}
            other => {
                if !excused(d, t0, boot) {
                    d.violation(format!(
                        "vm-monitor did not answer the agent's version range with {{\"version\":1}} within {SERVE_DEADLINE:?}: {other:?}"
                    ));
                }
                return None;
            }
        }
        Some(a)
    }

    async fn send(&mut self, ty: &str, content: Value) -> Option<u64> {
        self.next_id += 2;
        let id = self.next_id;
        let text = json!({"type": ty, "content": content, "id": id}).to_string();
        timeout(SERVE_DEADLINE, self.tx.send(Message::text(text)))
            .await
            .ok()?
            .ok()?;
        Some(id)
    }

    /// The next message, or `None` after `d` or when the connection closed.
    async fn recv_within(&mut self, d: Duration) -> Option<(u64, Value)> {
        timeout(d, self.rx.recv()).await.ok().flatten()
    }
}

/// A downscale request the agent sent and has no answer to yet.
struct Downscale {
    id: u64,
    target: u64,
    /// The lowest usage from a second before it was sent until now: the
    /// monitor decided at some point in that span, on what it measured then.
    lowest_usage: u64,
}

/// What the agent knows: the threshold the monitor should have, the load's
/// recent usage, and the pending exchanges.
struct Model {
    threshold: u64,
    /// (time, bytes) written over the last second.
    usage: VecDeque<(u64, u64)>,
    /// Since when usage has been at or over the threshold without a request.
    over_since: Option<u64>,
    last_request: Option<u64>,
    /// The downscale in flight.
    downscale: Option<Downscale>,
    /// (id, granted) of the upscale notification in flight.
    grant: Option<(u64, u64)>,
    /// (due time, granted): the agent answers upscale requests late.
    grant_due: Option<(u64, u64)>,
    /// The VM's memory as the agent granted it.
    mem: u64,
}

impl Model {
    /// The model of a compute that booted with 1 GiB in use.
    fn new() -> Self {
        Self {
            threshold: rules::threshold(MEM_TOTAL),
            usage: VecDeque::from([(now_us(), BOOT_USAGE)]),
            over_since: None,
            last_request: None,
            downscale: None,
            grant: None,
            grant_due: None,
            mem: MEM_TOTAL,
        }
    }

    fn record(&mut self, t: u64, bytes: u64) {
        self.usage.push_back((t, bytes));
        if let Some(ds) = self.downscale.as_mut() {
            ds.lowest_usage = ds.lowest_usage.min(bytes);
        }
        while self
            .usage
            .front()
            .is_some_and(|(t0, _)| t.saturating_sub(*t0) > SEC_US)
        {
            self.usage.pop_front();
        }
        if bytes >= self.threshold {
            self.over_since.get_or_insert(t);
        } else {
            self.over_since = None;
        }
    }

    fn current(&self) -> u64 {
        self.usage.back().map_or(0, |(_, b)| *b)
    }

    fn min_recent(&self) -> u64 {
        self.usage.iter().map(|(_, b)| *b).min().unwrap_or(0)
    }

    /// A new threshold: pressure is measured against it from `t` on.
    fn adopt(&mut self, t: u64, threshold: u64) {
        self.threshold = threshold;
        self.over_since = (self.current() >= threshold).then_some(t);
    }
}

/// Checks and records one message from the monitor.
fn observe(d: &Driver, m: &mut Model, boot: u64, t: u64, v: &Value, late_us: u64) {
    d.event(
        "agent_recv",
        json!({"msg": v, "usage_mib": m.current() / MIB, "threshold_mib": m.threshold / MIB}),
    );
    match v["type"].as_str() {
        Some("UpscaleRequest") => {
            if let Some(prev) = m.last_request {
                if t + NET_SLACK_US < prev + SEC_US && !excused(d, prev, boot) {
                    d.violation(format!(
                        "vm-monitor sent two UpscaleRequests {} ms apart (at most one a second)",
                        (t - prev) / 1000
                    ));
                }
            }
            if v["id"].as_u64().is_none_or(|id| id % 2 == 0) {
                d.violation(format!("vm-monitor's UpscaleRequest has no odd id: {v}"));
            }
            m.last_request = Some(t);
            m.over_since = (m.current() >= m.threshold).then_some(t);
            if m.grant.is_none() && m.grant_due.is_none() {
                let granted = (m.mem + 2048 * MIB).max(m.current() * 2);
                m.grant_due = Some((t + late_us, granted));
            }
        }
        Some("DownscaleResult") => {
            let Some(Downscale {
                id,
                target,
                lowest_usage,
            }) = m.downscale.take()
            else {
                return;
            };
            if v["id"] != id {
                d.violation(format!("DownscaleResult {v} does not answer id {id}"));
            }
            if v["Ok"] == true {
                let new = rules::threshold(rules::usable(target));
                let floor = lowest_usage + rules::DOWNSCALE_BUFFER;
                if new < floor {
                    d.violation(format!(
                        "vm-monitor accepted a downscale to {} MiB whose threshold {} MiB is under the usage {} MiB (the lowest from a second before the request until the answer) + {} MiB buffer",
                        target / MIB,
                        new / MIB,
                        lowest_usage / MIB,
                        rules::DOWNSCALE_BUFFER / MIB
                    ));
                }
                m.mem = target;
                m.adopt(t, new);
            }
        }
        Some("UpscaleConfirmation") => {
            if let Some((id, granted)) = m.grant.take() {
                if v["id"] == id {
                    m.mem = granted;
                    m.adopt(t, rules::threshold(rules::usable(granted)));
                }
            }
        }
        Some("InternalError" | "InvalidMessage") => {
            d.violation(format!("vm-monitor answered the agent with {v}"));
        }
        _ => {}
    }
}

/// Connects (with a health check that must be echoed), or `None`.
async fn served(d: &Driver, m: &mut Model, late_us: u64) -> Option<Agent> {
    let mut a = Agent::connect(d).await?;
    d.event("agent_connected", json!({}));
    let id = a.send("HealthCheck", json!({})).await?;
    let deadline = now_us() + SERVE_DEADLINE.as_micros() as u64;
    loop {
        let left = deadline.saturating_sub(now_us());
        match a.recv_within(Duration::from_micros(left)).await {
            Some((_, v)) if v["type"] == "HealthCheck" && v["id"] == id => return Some(a),
            Some((t, v)) => observe(d, m, a.boot, t, &v, late_us),
            None => {
                if !excused(d, a.since, a.boot) {
                    d.violation(format!(
                        "vm-monitor did not echo a reconnected agent's health check within {SERVE_DEADLINE:?}"
                    ));
                }
                return None;
            }
        }
    }
}

pub fn pressure(mut d: Driver) -> Body {
    Box::pin(async move {
        let shape = base_shape(&mut d, 5);
        d.intent = Some(shape.clone());
        d.configure(&shape).await;
        let _load = load::start(d.rng.random_range(1..=2));
        let late_us = d.rng.random_range(0..=2500u64) * 1000;
        let drop_at = d.rng.random_range(20..=120u64);
        let downscale_every = d.rng.random_range(7..=25u64);
        let step = d.rng.random_range(32..=96u64) * MIB;
        let mut usage = BOOT_USAGE;
        let mut model = Model::new();
        let mut agent: Option<Agent> = None;
        let mut boot = d.boot();
        // 150 steps of 100 ms: 15 s of growing load.
        for tick in 0..150u64 {
            let t = now_us();
            let now_boot = d.boot();
            if now_boot != boot {
                // A rebooted compute starts over from MemTotal, its
                // Postgres from the 1 GiB the VM image starts with.
                boot = now_boot;
                model = Model::new();
                agent = None;
                usage = BOOT_USAGE;
            }
            usage += step;
            d.set_cgroup_usage(usage);
            model.record(t, usage);
            if agent.is_none() {
                model.over_since = None;
                model.downscale = None;
                // A grant whose confirmation was lost with the connection
                // may have been adopted: assume the higher threshold, so
                // that no request is expected that the monitor need not send.
                if let Some((_, granted)) = model.grant.take() {
                    model.mem = granted;
                    model.adopt(t, rules::threshold(rules::usable(granted)));
                }
                agent = served(&d, &mut model, late_us).await;
            }
            let Some(a) = agent.as_mut() else {
                driver::sleep(Duration::from_micros(TICK_US)).await;
                continue;
            };
            if let Some((due, granted)) = model.grant_due {
                if t >= due {
                    model.grant_due = None;
                    let content = json!({"granted": {"cpu": 2.0, "mem": granted}});
                    model.grant = a
                        .send("UpscaleNotification", content)
                        .await
                        .map(|id| (id, granted));
                }
            }
            if tick % downscale_every == 0 && model.downscale.is_none() {
                // Below the VM's memory: a few GiB less, or just at the
                // edge, where the new threshold is near usage + buffer.
                let target = if d.rng.random_bool(0.5) {
                    let cut = d.rng.random_range(1..=3u64) * 1024 * MIB;
                    model.mem.saturating_sub(cut).max(1024 * MIB)
                } else {
                    let edge = (usage as f64 + d.rng.random_range(-150.0..250.0) * MIB as f64)
                        / (1.0 - rules::MIN_OVERHEAD_FRACTION);
                    edge as u64 + rules::SYS_BUFFER
                };
                let content = json!({"target": {"cpu": 0.5, "mem": target}});
                let lowest_usage = model.min_recent();
                model.downscale = a
                    .send("DownscaleRequest", content)
                    .await
                    .map(|id| Downscale {
                        id,
                        target,
                        lowest_usage,
                    });
            }
            if tick == drop_at {
                // The agent drops its connection; it comes back next tick.
                let _ = timeout(SERVE_DEADLINE, a.tx.close()).await;
                d.event("agent_dropped", json!({}));
                agent = None;
                continue;
            }
            let tick_end = t + TICK_US;
            let mut closed = false;
            while now_us() < tick_end {
                let left = Duration::from_micros(tick_end - now_us());
                match timeout(left, a.rx.recv()).await {
                    Ok(Some((at, v))) => observe(&d, &mut model, a.boot, at, &v, late_us),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let (since_conn, conn_boot) = (a.since, a.boot);
            if closed {
                if !excused(&d, since_conn, conn_boot) {
                    d.violation("vm-monitor closed the agent's connection on a healthy network");
                }
                agent = None;
                continue;
            }
            let now = now_us();
            if let Some(since) = model.over_since {
                if now > since + SEC_US + NET_SLACK_US
                    && !excused(&d, since.min(since_conn), conn_boot)
                {
                    d.violation(format!(
                        "usage {} MiB has been at or over the threshold {} MiB for {} ms without an UpscaleRequest",
                        usage / MIB,
                        model.threshold / MIB,
                        (now - since) / 1000
                    ));
                    model.over_since = None;
                }
            }
        }
        drop(agent);
        d.converge().await;
    })
}
