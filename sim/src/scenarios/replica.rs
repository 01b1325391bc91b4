//! A replica compute and its storage: it starts as a hot standby of
//! `storage` and is moved between `storage` and `storage2` (which follows
//! the first, a little behind) by skip-flag notifies under client reads.
//! After each move's answer the control plane waits up to [`MOVE_BOUND`]
//! of simulated time for it to stream from the new source and logs what
//! it saw ([`Event::ReplicaMoveWaited`]): `checkers/replica_move.rs`
//! judges it (and the timeline after a failover), with the excuses of the
//! fault ledger. Every seed also checks that no postmaster was restarted
//! and that the reported replay LSN never went backwards.

use rand::Rng;

use super::driver::now_us;
use super::{Body, Driver, Topology, base_shape, load};
use crate::events::Event;
use crate::faults::FaultKind;
use crate::names::{STORAGE, STORAGE2};

/// How soon after a move's answer the replica must stream from the new source.
pub const MOVE_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

pub fn two_storages(_: u64) -> Topology {
    Topology {
        two_storages: true,
        ..Topology::default()
    }
}

pub fn move_under_load(mut d: Driver) -> Body {
    Box::pin(async move {
        // A replica never runs the catalog; the flag says so to the checks.
        let mut cur = started(&mut d).await;
        let _load = load::start(d.rng.random_range(1..=3));
        let n = d.rng.random_range(2..=5);
        for _ in 0..n {
            d.pause(50, 600).await;
            let mut next = cur.clone();
            next.storage = 1 - cur.storage;
            let next = d.stamp(next);
            d.intent = Some(next.clone());
            let out = d.notify(&next).await;
            if out.status() == Some(200) {
                let host = if next.storage == 1 { STORAGE2 } else { STORAGE };
                streams_from(&d, host, MOVE_BOUND).await;
            }
            cur = next;
        }
        d.converge().await;
    })
}

/// The replica's first configure, on `storage`.
async fn started(d: &mut Driver) -> crate::specgen::SpecShape {
    let mut cur = base_shape(d, 5);
    cur.replica = true;
    cur.skip_catalog = true;
    cur.deltas.clear();
    cur.safekeepers = crate::names::SAFEKEEPERS
        .iter()
        .map(|(h, _)| format!("{h}:{}", crate::names::SAFEKEEPER_PORT))
        .collect();
    // Sometimes one safekeeper is cut off: a majority of 2 still commits.
    if d.rng.random_bool(0.3) {
        d.partition_safekeeper(crate::names::SAFEKEEPERS[2].0);
    }
    d.intent = Some(cur.clone());
    if d.configure(&cur).await.status() == Some(200) {
        let commit = d
            .observed_state()
            .and_then(|s| s.replication)
            .and_then(|r| r.commit_lsn);
        if let Some(commit) = commit {
            d.emit(Event::CommitLsnReported {
                commit: commit.0,
                safekeepers: cur.safekeepers.len(),
            });
        }
    }
    d.repair_safekeeper(crate::names::SAFEKEEPERS[2].0);
    cur
}

/// A notify that moves `cur` to storage `to`.
async fn move_to(
    d: &mut Driver,
    cur: &crate::specgen::SpecShape,
    to: u8,
) -> (crate::specgen::SpecShape, bool) {
    let mut next = cur.clone();
    next.storage = to;
    let next = d.stamp(next);
    d.intent = Some(next.clone());
    let ok = d.notify(&next).await.status() == Some(200);
    (next, ok)
}

pub fn failover(mut d: Driver) -> Body {
    Box::pin(async move {
        let cur = started(&mut d).await;
        let _load = load::start(d.rng.random_range(1..=2));
        d.pause(100, 500).await;
        // The old source is gone for the compute; the second storage is promoted.
        d.partition(FaultKind::PartitionStorage);
        d.pause(0, 300).await;
        d.promote_storage(STORAGE2);
        d.pause(0, 300).await;
        let (_next, ok) = move_to(&mut d, &cur, 1).await;
        if ok {
            // Judged with the timeline: storage2 was promoted.
            streams_from(&d, STORAGE2, MOVE_BOUND).await;
        }
        d.repair(FaultKind::PartitionStorage);
        d.converge().await;
    })
}

pub fn lagging(mut d: Driver) -> Body {
    Box::pin(async move {
        // storage2 is 2 s of WAL behind storage.
        d.set_storage_lag(20 * 8192);
        let cur = started(&mut d).await;
        let _load = load::start(1);
        d.pause(300, 800).await;
        let (_next, ok) = move_to(&mut d, &cur, 1).await;
        if ok {
            // It may not stream from behind; it must once storage2 caught up.
            streams_from(&d, STORAGE2, MOVE_BOUND + std::time::Duration::from_secs(3)).await;
        }
        d.converge().await;
    })
}

/// Waits (bounded) until the replica's WAL receiver streams from `host`,
/// then logs where it streams from ([`Event::ReplicaMoveWaited`]) for the
/// checker.
async fn streams_from(d: &Driver, host: &str, within: std::time::Duration) {
    let t0 = now_us();
    let bound = u64::try_from(within.as_micros()).unwrap_or(u64::MAX);
    let want = format!("{host}:{}", crate::names::STORAGE_PORT);
    let sender = loop {
        let sender = d.receiver_sender();
        if sender.as_deref() == Some(want.as_str()) {
            d.event(
                "replica_streams",
                serde_json::json!({"from": want, "after_us": now_us() - t0}),
            );
            break sender;
        }
        if now_us() - t0 > bound {
            break sender;
        }
        d.sleep(std::time::Duration::from_millis(20)).await;
    };
    d.emit(Event::ReplicaMoveWaited {
        to: host.to_string(),
        answered_us: t0,
        bound_ms: bound / 1000,
        sender,
        timeline: d.receiver_timeline(),
    });
}
