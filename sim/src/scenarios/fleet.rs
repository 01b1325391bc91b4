//! A fleet: one control plane and [`COMPUTES`] computes on separate hosts
//! take a shard-split storm: every compute is notified at the same instant.
//!
//! Its topology is a fleet ([`Topology::fleet`]): the runner builds the
//! `storage` host, the `cplane` host and hosts `compute-00` … `compute-49`,
//! each the production supervisor on its own `SimEnv` with its own
//! simulated Postgres and its own record (the driver's fleet). No fault schedule: the storm
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

use super::driver::{TICK, now_us};
use super::{Body, Driver, Topology};
use crate::checkers::notify::NOTIFY_BOUND;
use crate::http::Outcome;
use crate::names::fleet_host;
use crate::specgen::SpecShape;

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

/// One storage host and [`COMPUTES`] computes on hosts of their own.
pub fn topology(_: u64) -> Topology {
    Topology {
        fleet: Some(COMPUTES),
        ..Topology::default()
    }
}

/// The control plane: a first spec to every compute (a cold fleet), then
/// the storm, then the checks.
pub fn storm(d: Driver) -> Body {
    Box::pin(async move {
        let seed = d.seed;
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xF1EE7);
        let firsts: Vec<SpecShape> = (0..d.fleet_len())
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
            .map(|(k, shape)| tokio::spawn(d.configure_on(k, shape.configure_body())))
            .collect();
        for (k, h) in starts.into_iter().enumerate() {
            let out = h.await.unwrap_or(Outcome::Transport("task failed".into()));
            if out.status() != Some(200) {
                d.violation(format!(
                    "{}: first configure answered {}",
                    fleet_host(k),
                    out.label()
                ));
                return;
            }
        }
        // The storm: every compute moves to a new shard at the same instant.
        let t0 = now_us();
        d.event_at(t0, "storm", json!({"computes": d.fleet_len()}));
        let mut notifies = Vec::new();
        for (k, first) in firsts.iter().enumerate() {
            let mut next = first.clone();
            next.pageserver += 1;
            next.skip_catalog = true;
            next.operation += 1;
            // Judged as it is answered (the notify checker of compute k).
            notifies.push(tokio::spawn(d.notify_on(k, &next)));
        }
        let mut round_trips = Vec::new();
        for (k, h) in notifies.into_iter().enumerate() {
            let (out, t1) = h
                .await
                .unwrap_or_else(|_| (Outcome::Transport("task failed".into()), now_us()));
            if out.status() == Some(200) {
                round_trips.push(t1 - t0);
            } else {
                d.violation_on(k, format!("storm notify answered {}", out.label()));
            }
        }
        round_trips.sort_unstable();
        if let Some(p99) = percentile(&round_trips, 99) {
            d.event(
                "storm_done",
                json!({"p99_us": p99, "max_us": round_trips.last()}),
            );
            if Duration::from_micros(p99) > P99_BOUND {
                d.violation(format!(
                    "storm notify p99 {} ms of simulated time exceeds the bound {} ms",
                    p99 / 1000,
                    P99_BOUND.as_millis()
                ));
            }
        }
    })
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}
