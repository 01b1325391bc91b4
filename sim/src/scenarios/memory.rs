//! Memory pressure under autoscaling: the compute runs the real vm-monitor
//! (`compute_ctl::vm_monitor`) on its cgroup; client load grows the
//! cgroup's usage; an autoscaler-agent on the control-plane host answers
//! upscale requests late, drops and re-opens its connection, and asks for
//! downscales in the middle of the pressure.
//!
//! Invariants, judged by `checkers/vm_monitor.rs` from what the agent logs
//! ([`AgentSeen`]: its exchanges with the monitor) and the usage the load
//! writes ([`crate::events::Event::CgroupUsage`]):
//! - an accepted downscale leaves its threshold at or above the lowest
//!   usage from a second before the request was sent until its answer
//!   arrived, plus the 100 MiB buffer;
//! - once usage is at or over the threshold, an `UpscaleRequest` arrives
//!   within 1 s of simulated time (and again within each second it stays
//!   there), and never two less than a second apart;
//! - a (re)connecting agent is served: the version answer and the echo of
//!   its health check, each within 2 s;
//! - the monitor speaks the protocol (odd ids, results answer their
//!   request, no error answers).
//!
//! A network fault or a host crash excuses what it interrupts.

use std::time::Duration;

use compute_ctl::vm_monitor::rules;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::driver::{self, BOOT_USAGE, MEM_TOTAL, now_us, timeout};
use super::{Body, Driver, Topology, base_shape, load};
use crate::checkers::vm_monitor::SERVE_DEADLINE;
use crate::events::{AgentSeen, Event};
use crate::names::{COMPUTE, VM_MONITOR_PORT};

const MIB: u64 = rules::MIB;
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
}

/// Logs what the agent did or was sent, for the checkers.
fn saw(d: &Driver, seen: AgentSeen) {
    d.emit(Event::Agent(seen));
}

impl Agent {
    /// Connects and negotiates (the answer logged for the checkers);
    /// `None` when the compute cannot be reached (yet) or does not answer.
    async fn connect() -> Option<(Self, Option<Value>)> {
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
        let mut a = Self { tx, rx, next_id: 0 };
        let range = Message::text(json!({"min": 1, "max": 1}).to_string());
        timeout(SERVE_DEADLINE, a.tx.send(range)).await.ok()?.ok()?;
        let answer = a.recv_within(SERVE_DEADLINE).await.map(|(_, v)| v);
        Some((a, answer))
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

/// What the agent knows, to play its part: the VM's memory as it granted
/// it, the threshold it expects (for the trace), the load's usage and its
/// exchanges in flight. The checkers keep their own account.
struct Model {
    threshold: u64,
    /// The usage the load wrote last.
    usage: u64,
    /// (id, target) of the downscale in flight.
    downscale: Option<(u64, u64)>,
    /// (id, granted) of the upscale notification in flight.
    grant: Option<(u64, u64)>,
    /// (due time, granted): the agent answers upscale requests late.
    grant_due: Option<(u64, u64)>,
    /// The VM's memory as the agent granted it.
    mem: u64,
}

impl Model {
    /// The model of a compute that booted with 1 GiB in use (logged).
    fn new(d: &Driver) -> Self {
        saw(
            d,
            AgentSeen::Fresh {
                mem_total: MEM_TOTAL,
                usage: BOOT_USAGE,
            },
        );
        Self {
            threshold: rules::threshold(MEM_TOTAL),
            usage: BOOT_USAGE,
            downscale: None,
            grant: None,
            grant_due: None,
            mem: MEM_TOTAL,
        }
    }
}

/// Logs one message from the monitor and plays the agent's part in it.
fn observe(d: &Driver, m: &mut Model, t: u64, v: &Value, late_us: u64) {
    d.event(
        "agent_recv",
        json!({"msg": v, "usage_mib": m.usage / MIB, "threshold_mib": m.threshold / MIB}),
    );
    saw(
        d,
        AgentSeen::Recv {
            at_us: t,
            msg: v.clone(),
        },
    );
    match v["type"].as_str() {
        Some("UpscaleRequest") if m.grant.is_none() && m.grant_due.is_none() => {
            let granted = (m.mem + 2048 * MIB).max(m.usage * 2);
            m.grant_due = Some((t + late_us, granted));
        }
        Some("DownscaleResult") => {
            if let Some((_, target)) = m.downscale.take() {
                if v["Ok"] == true {
                    m.mem = target;
                    m.threshold = rules::threshold(rules::usable(target));
                }
            }
        }
        Some("UpscaleConfirmation") => {
            if let Some((id, granted)) = m.grant.take() {
                if v["id"] == id {
                    m.mem = granted;
                    m.threshold = rules::threshold(rules::usable(granted));
                }
            }
        }
        _ => {}
    }
}

/// Connects (with a health check that must be echoed), or `None`; the
/// answers logged for the checkers.
async fn served(d: &Driver, m: &mut Model, late_us: u64) -> Option<Agent> {
    let (mut a, version) = Agent::connect().await?;
    let negotiated = version == Some(json!({"version": 1}));
    saw(d, AgentSeen::Version { answer: version });
    if !negotiated {
        return None;
    }
    d.event("agent_connected", json!({}));
    let id = a.send("HealthCheck", json!({})).await?;
    let deadline = now_us() + SERVE_DEADLINE.as_micros() as u64;
    loop {
        let left = deadline.saturating_sub(now_us());
        match a.recv_within(Duration::from_micros(left)).await {
            Some((_, v)) if v["type"] == "HealthCheck" && v["id"] == id => {
                saw(d, AgentSeen::HealthCheck { echoed: true });
                return Some(a);
            }
            Some((t, v)) => observe(d, m, t, &v, late_us),
            None => {
                saw(d, AgentSeen::HealthCheck { echoed: false });
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
        let mut model = Model::new(&d);
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
                model = Model::new(&d);
                agent = None;
                usage = BOOT_USAGE;
            }
            usage += step;
            // Logged for the checkers ([`Event::CgroupUsage`]).
            d.set_cgroup_usage(usage);
            model.usage = usage;
            if agent.is_none() {
                saw(&d, AgentSeen::Connecting { boot: d.boot() });
                model.downscale = None;
                // A grant whose confirmation was lost with the connection
                // may have been adopted: assume the higher memory.
                if let Some((_, granted)) = model.grant.take() {
                    model.mem = granted;
                    model.threshold = rules::threshold(rules::usable(granted));
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
                    if let Some((id, mem)) = model.grant {
                        saw(&d, AgentSeen::Granted { id, mem });
                    }
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
                model.downscale = a
                    .send("DownscaleRequest", content)
                    .await
                    .map(|id| (id, target));
                if let Some((id, target)) = model.downscale {
                    saw(&d, AgentSeen::DownscaleAsked { id, target });
                }
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
                    Ok(Some((at, v))) => observe(&d, &mut model, at, &v, late_us),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if closed {
                saw(&d, AgentSeen::Closed);
                agent = None;
                continue;
            }
            // A step listened to on a live connection: the upscale
            // checker's moment to look at the pressure.
            saw(&d, AgentSeen::Listened);
        }
        drop(agent);
        d.converge().await;
    })
}
