//! A fleet: one control plane and [`COMPUTES`] computes on separate hosts
//! take a shard-split storm: every compute is notified at the same instant.
//!
//! This scenario builds its own world (see [`run`]; the runner calls it
//! instead of the one-compute world of the other scenarios): the `storage`
//! host, the `cplane` host and hosts `compute-00` … `compute-49`, each the
//! production supervisor on its own `SimEnv` with its own simulated
//! Postgres and its own [`Shared`] record. No fault schedule: the storm
//! itself is the stress (faults are the other scenarios' business).
//!
//! Invariants, per compute: every notify is answered 200 and does no
//! catalog work and reloads by SIGHUP (the single-compute notify checker),
//! the compute converges to its notified spec (the convergence checker), its status
//! changes are legal; and over the fleet the simulated p99 of the notify
//! round trip (client side) stays within [`P99_BOUND`].

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::json;

use super::{Body, Driver, Topology};
use crate::checkers::notify::NOTIFY_BOUND;
use crate::events::Request;
use crate::http::{self, Outcome};
use crate::names::{self, CPLANE, HTTP_PORT};
use crate::specgen::SpecShape;
use crate::world::shared::{Shared, now_us};
use crate::world::{self, TICK};

pub const NAME: &str = "fleet_shard_split_storm";

/// Computes in the fleet.
pub const COMPUTES: usize = 50;

/// Bound on the simulated p99 round trip of a storm notify, client side.
///
/// The hosts share nothing but the control plane's sending host, so a
/// storm must cost each compute what one notify costs: the supervisor's
/// skip-flag reconfigure is bounded by [`NOTIFY_BOUND`] whatever
/// the catalog; the HTTP exchange around it (connect, request, answer) is
/// delivered at world-step boundaries, at most [`TICK`] per message, and
/// takes four messages. A p99 above this means notifies queue behind each
/// other somewhere (they must not).
pub const P99_BOUND: Duration =
    Duration::from_millis(NOTIFY_BOUND.as_millis() as u64 + 4 * TICK.as_millis() as u64);

/// Host name of compute `k`.
pub fn host(k: usize) -> String {
    format!("compute-{k:02}")
}

/// The runner builds this scenario's world itself ([`run`]).
pub fn topology(_: u64) -> Topology {
    Topology::default()
}

/// Not called: the fleet's control plane runs inside [`run`].
pub fn body(_: Driver) -> Body {
    Box::pin(async {})
}

/// What one fleet seed found.
pub struct FleetOutcome {
    pub violations: Vec<String>,
    pub simulated: Duration,
    pub slowest_notify_us: Option<u64>,
    pub trace: String,
}

/// Runs one seed of the fleet.
pub fn run(seed: u64, tracing: bool) -> FleetOutcome {
    let cplane = Shared::new();
    let computes: Vec<Shared> = (0..COMPUTES).map(|_| Shared::new()).collect();
    for sh in std::iter::once(&cplane).chain(&computes) {
        if !tracing {
            sh.lock().log.trace = crate::trace::Trace::off();
        }
    }
    let mut sim = world::build(seed, Duration::from_millis(2));
    world::add_storage(&mut sim, Shared::new());
    for (k, sh) in computes.iter().enumerate() {
        sh.lock().catalog.reset(names::SUPERUSER);
        world::add_compute_on(
            &mut sim,
            &host(k),
            sh.clone(),
            seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            world::params(),
            world::Boot {
                launch_spec: None,
                fetch_spec_from_cplane: false,
                autoscaling: false,
            },
        );
    }
    cplane.lock().log.trace.push(
        0,
        "seed",
        json!({"seed": seed, "scenario": NAME, "computes": COMPUTES}),
    );
    let driver = {
        let cplane = cplane.clone();
        let computes = computes.clone();
        async move {
            storm(seed, &cplane, &computes).await;
            Ok(())
        }
    };
    sim.client(CPLANE, driver);
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                cplane.violation(format!("simulation error: {e}"));
                break;
            }
        }
    }
    let simulated = sim.elapsed();
    let end = u64::try_from(simulated.as_micros()).unwrap_or(u64::MAX);
    for sh in &computes {
        sh.lock().harness.end_us = end;
        sh.finish();
    }
    drop(sim);
    let mut violations = cplane.lock().log.violations.clone();
    let mut slowest = None;
    for (k, sh) in computes.iter().enumerate() {
        let s = sh.lock();
        violations.extend(s.log.violations.iter().map(|v| format!("{}: {v}", host(k))));
        slowest = slowest.max(s.harness.notify_round_trips_us.iter().copied().max());
    }
    let mut trace = cplane.lock().log.trace.to_jsonl();
    for sh in &computes {
        trace.push_str(&sh.lock().log.trace.to_jsonl());
    }
    FleetOutcome {
        violations,
        simulated,
        slowest_notify_us: slowest,
        trace,
    }
}

/// The control plane: a first spec to every compute (a cold fleet), then
/// the storm, then the checks.
async fn storm(seed: u64, cplane: &Shared, computes: &[Shared]) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xF1EE7);
    let firsts: Vec<SpecShape> = (0..computes.len())
        .map(|k| {
            let roles = rng.random_range(1..=20);
            let dbs = rng.random_range(1..=2);
            SpecShape::generate(seed ^ k as u64, roles, dbs)
        })
        .collect();
    // Cold start of the fleet: every compute gets its first spec.
    let starts: Vec<_> = firsts
        .iter()
        .enumerate()
        .map(|(k, shape)| tokio::spawn(post(host(k), shape.configure_body())))
        .collect();
    for (k, h) in starts.into_iter().enumerate() {
        let out = h.await.unwrap_or(Outcome::Transport("task failed".into()));
        if out.status() != Some(200) {
            cplane.violation(format!(
                "{}: first configure answered {}",
                host(k),
                out.label()
            ));
            return;
        }
    }
    // The storm: every compute moves to a new shard at the same instant.
    let t0 = now_us();
    cplane.event_at(t0, "storm", json!({"computes": computes.len()}));
    let mut notifies = Vec::new();
    for (k, first) in firsts.iter().enumerate() {
        let mut next = first.clone();
        next.pageserver += 1;
        next.skip_catalog = true;
        next.operation += 1;
        let sent = super::driver::send(&computes[k], Request::Notify, "/configure", next.operation);
        let body = next.configure_body();
        let to = host(k);
        let sh = computes[k].clone();
        notifies.push(tokio::spawn(async move {
            let out = post(to, body).await;
            // Judged as it is answered (the notify checker of compute k).
            super::driver::answer(&sh, &sent, &out);
            (out, now_us())
        }));
    }
    let mut round_trips = Vec::new();
    for (k, h) in notifies.into_iter().enumerate() {
        let (out, t1) = h
            .await
            .unwrap_or_else(|_| (Outcome::Transport("task failed".into()), now_us()));
        if out.status() == Some(200) {
            round_trips.push(t1 - t0);
        } else {
            computes[k].violation(format!("storm notify answered {}", out.label()));
        }
    }
    round_trips.sort_unstable();
    if let Some(p99) = percentile(&round_trips, 99) {
        cplane.event(
            "storm_done",
            json!({"p99_us": p99, "max_us": round_trips.last()}),
        );
        if Duration::from_micros(p99) > P99_BOUND {
            cplane.violation(format!(
                "storm notify p99 {} ms of simulated time exceeds the bound {} ms",
                p99 / 1000,
                P99_BOUND.as_millis()
            ));
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// `POST /configure` to `host`, bounded by the driver's deadline.
async fn post(host: String, body: String) -> Outcome {
    http::request(
        &host,
        HTTP_PORT,
        "POST",
        "/configure",
        Some(body),
        super::driver::CONFIGURE_DEADLINE,
    )
    .await
}
