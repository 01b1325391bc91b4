//! Storage notifications: skip-flag `/configure` after a migration or a
//! shard split, duplicated and reordered.

use rand::Rng;

use super::{Body, Driver, base_shape, load};
use crate::events::Request;
use crate::specgen::SpecShape;

/// Cold start, then the first configure until it is applied.
async fn started(d: &mut Driver, max_roles: usize) -> SpecShape {
    let shape = base_shape(d, max_roles);
    d.intent = Some(shape.clone());
    d.configure(&shape).await;
    shape
}

/// The next storage location of `prev`, as a skip-flag notify.
fn moved(d: &mut Driver, prev: &SpecShape) -> SpecShape {
    let mut s = prev.clone();
    s.pageserver += 1;
    s.skip_catalog = true;
    s.deltas.clear();
    d.stamp(s)
}

pub fn after_migration(mut d: Driver) -> Body {
    Box::pin(async move {
        // Up to 500 roles: the notify bound must not depend on it.
        let max_roles = if d.rng.random_bool(0.2) { 500 } else { 20 };
        let mut cur = started(&mut d, max_roles).await;
        let _load = load::start(d.rng.random_range(1..=3));
        let n = d.rng.random_range(2..=6);
        for _ in 0..n {
            d.pause(5, 300).await;
            let next = moved(&mut d, &cur);
            d.intent = Some(next.clone());
            d.notify(&next).await;
            cur = next;
        }
        d.converge().await;
    })
}

pub fn shard_split_burst(mut d: Driver) -> Body {
    Box::pin(async move {
        let mut cur = started(&mut d, 10).await;
        d.pause(5, 100).await;
        let n = d.rng.random_range(3..=6);
        let mut handles = Vec::new();
        for _ in 0..n {
            let next = moved(&mut d, &cur);
            let sent = d.send(Request::Notify, "/configure", next.operation);
            // As `Driver::configure`: a request a network fault may have
            // swallowed is given up, and the re-sends below land it.
            let req = d.configure_abandoning(next.configure_body(), sent.t0);
            handles.push(tokio::spawn(async move {
                let out = req.await;
                (sent, out)
            }));
            cur = next;
            d.pause(0, 3).await;
        }
        for h in handles {
            // Judged when the control plane reads the answer.
            if let Ok((sent, out)) = h.await {
                d.answer(&sent, &out);
            }
        }
        // The control plane keeps re-sending its latest notify until it lands.
        d.intent = Some(cur);
        d.converge().await;
    })
}

pub fn duplicated_reordered(mut d: Driver) -> Body {
    Box::pin(async move {
        let cur = started(&mut d, 10).await;
        d.pause(5, 100).await;
        let first = moved(&mut d, &cur);
        d.intent = Some(first.clone());
        let out = d.notify(&first).await;
        if out.status() == Some(200) {
            // A duplicate of an applied notify is answered 200 and does no
            // work (`checkers/resend.rs`).
            d.resend(&first).await;
        }
        // Two newer notifies sent in reverse order: the later one (newer)
        // goes first, then the stale one; the control plane then re-sends its
        // latest until it is in effect.
        let second = moved(&mut d, &first);
        let third = moved(&mut d, &second);
        d.notify(&third).await;
        d.notify(&second).await;
        d.intent = Some(third);
        d.converge().await;
    })
}
