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
//! changes are legal; and over the fleet every request is answered 200
//! (`checkers/fleet_answered.rs`) and the simulated p99 of the notify
//! round trip (client side) stays within [`P99_BOUND`]
//! (`checkers/storm_p99.rs`). The scenario logs each answer
//! ([`Event::FleetAnswered`]) and the storm's end; the checkers judge.

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::json;

use super::driver::now_us;
use super::{Body, Driver, Topology};
pub use crate::checkers::storm_p99::P99_BOUND;
use crate::checkers::storm_p99::percentile;
use crate::events::{Event, FleetRequest};
use crate::http::Outcome;
use crate::names::fleet_host;
use crate::specgen::SpecShape;

pub const NAME: &str = "fleet_shard_split_storm";

/// Computes in the fleet.
pub const COMPUTES: usize = 50;

/// How compute `k` answered `request` (`round_trip_us`: of a storm notify).
fn answered(k: usize, request: FleetRequest, out: &Outcome, round_trip_us: u64) -> Event {
    Event::FleetAnswered {
        host: fleet_host(k),
        request,
        outcome: out.label(),
        code: out.status(),
        round_trip_us,
    }
}

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
            d.emit(answered(k, FleetRequest::FirstConfigure, &out, 0));
            if out.status() != Some(200) {
                // No storm over a fleet that did not start.
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
            d.emit(answered(k, FleetRequest::StormNotify, &out, t1 - t0));
            if out.status() == Some(200) {
                round_trips.push(t1 - t0);
            }
        }
        round_trips.sort_unstable();
        if let Some(p99) = percentile(&round_trips, 99) {
            d.event(
                "storm_done",
                json!({"p99_us": p99, "max_us": round_trips.last()}),
            );
        }
        // Judged by `checkers/storm_p99.rs`.
        d.emit(Event::StormOver {
            computes: d.fleet_len(),
        });
    })
}
