//! A fleet's shard-split storm costs each compute what one notify costs:
//! the simulated p99 of the storm notifies' round trips (client side,
//! those answered 200) stays within [`P99_BOUND`], judged once every
//! notify was answered ([`Event::StormOver`]).

use std::time::Duration;

use super::Checker;
use super::notify::NOTIFY_BOUND;
use crate::events::{Event, FleetRequest};
use crate::names::TICK;

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

#[derive(Default)]
pub struct StormP99 {
    /// Round trips (µs) of the storm notifies answered 200 so far.
    round_trips: Vec<u64>,
}

impl Checker for StormP99 {
    fn on_event(&mut self, _t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match ev {
            Event::FleetAnswered {
                request: FleetRequest::StormNotify,
                code: Some(200),
                round_trip_us,
                ..
            } => self.round_trips.push(*round_trip_us),
            Event::StormOver { .. } => {
                let mut sorted = std::mem::take(&mut self.round_trips);
                sorted.sort_unstable();
                if let Some(p99) = percentile(&sorted, 99) {
                    if Duration::from_micros(p99) > P99_BOUND {
                        out.push(format!(
                            "storm notify p99 {} ms of simulated time exceeds the bound {} ms",
                            p99 / 1000,
                            P99_BOUND.as_millis()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storm(round_trips_ms: &[u64]) -> Vec<String> {
        let mut c = StormP99::default();
        let mut out = Vec::new();
        for (k, ms) in round_trips_ms.iter().enumerate() {
            let ev = Event::FleetAnswered {
                host: crate::names::fleet_host(k),
                request: FleetRequest::StormNotify,
                outcome: "200".into(),
                code: Some(200),
                round_trip_us: ms * 1000,
            };
            c.on_event(0, &ev, &mut out);
        }
        c.on_event(
            0,
            &Event::StormOver {
                computes: round_trips_ms.len(),
            },
            &mut out,
        );
        out
    }

    #[test]
    fn a_storm_whose_notifies_queue_is_reported_and_one_slow_straggler_is_not() {
        let bound = P99_BOUND.as_millis() as u64;
        // One straggler in a hundred is not the p99 (nearest rank 99).
        let mut quick = vec![100; 99];
        quick.push(bound * 4);
        assert!(storm(&quick).is_empty());
        // Notifies that queue: each waits for the one before.
        let queued: Vec<u64> = (1..=50).map(|k| k * 40).collect();
        let out = storm(&queued);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].starts_with("storm notify p99 2000 ms"), "{out:?}");
        assert_eq!(percentile(&[], 99), None);
    }
}
