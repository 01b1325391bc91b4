//! The catch-up of a new primary with safekeepers: while its PGDATA has
//! `standby.signal` and `primary_conninfo` names a safekeeper, the
//! simulated Postgres streams that safekeeper's WAL ([`crate::world::walstream`])
//! into its own, until `pg_promote()` ends recovery or it stops. A reload
//! with another `primary_conninfo` restarts the stream.

use std::time::Duration;

use compute_ctl::env::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::world::env::{SimClock, SimEnv};
use crate::world::walstream::{self, Msg};

const RETRY: Duration = Duration::from_millis(200);

/// Whether `conninfo` names a safekeeper (the durable catch-up) rather
/// than a storage host (a replica's WAL receiver).
pub fn names_safekeeper(conninfo: &str) -> bool {
    walstream::upstream_of(conninfo).is_some_and(|(_, p, _)| p == crate::names::SAFEKEEPER_PORT)
}

/// Runs until the postmaster stops or is promoted.
pub async fn run(
    env: SimEnv,
    mut conninfo: watch::Receiver<String>,
    stopping: watch::Receiver<bool>,
) {
    loop {
        if *stopping.borrow() || !env.shared().lock().wal.compute.in_recovery {
            return;
        }
        let current = conninfo.borrow_and_update().clone();
        if let Some((host, port, app)) = walstream::upstream_of(&current) {
            tokio::select! {
                biased;
                _ = conninfo.changed() => continue,
                () = stream(&env, &host, port, &app) => {}
            }
        }
        SimClock.sleep(RETRY).await;
    }
}

async fn stream(env: &SimEnv, host: &str, port: u16, app: &str) {
    let Some(s) = walstream::connect(host, port).await else {
        return;
    };
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    let (tli, end) = {
        let sh = env.shared().lock();
        (sh.wal.compute.wal.tli, sh.wal.compute.wal.end())
    };
    if w.write_all(walstream::start_line(app, tli, end).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    while let Some(msg) = walstream::next_msg(&mut lines).await {
        let end = {
            let mut sh = env.shared().lock();
            let c = &mut sh.wal.compute;
            if !c.in_recovery {
                return;
            }
            match msg {
                Msg::Refused(why) => {
                    drop(sh);
                    env.shared()
                        .event("catch_up_refused", serde_json::json!({"why": why}));
                    return;
                }
                Msg::History(h, t) => c.wal.adopt_history(&h, t),
                Msg::Batch(recs) => c.wal.receive(&recs),
                Msg::Keepalive => {}
            }
            c.wal.end()
        };
        if w.write_all(format!("F {end}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}
