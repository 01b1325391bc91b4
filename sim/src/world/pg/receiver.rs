//! The WAL receiver of a simulated standby: connects to the storage named
//! by `primary_conninfo` over turmoil TCP, asks it to `STREAM`, and follows
//! the LSNs it sends (receive, then replay). Another `primary_conninfo`
//! (a reload) restarts it at once; a failed upstream is retried after
//! `wal_retrieve_retry_interval` (200 ms, as compute_ctl writes it). An
//! upstream behind what was already replayed is not streamed from (the
//! receiver waits, as Postgres' "requested starting point is ahead").

use std::time::Duration;

use compute_ctl::env::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::world::env::{SimClock, SimEnv};
use crate::world::shared::Receiver;

const RETRY: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn upstream(conninfo: &str) -> Option<(String, u16)> {
    let cfg: tokio_postgres::Config = conninfo.parse().ok()?;
    let host = match cfg.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        _ => return None,
    };
    Some((host, cfg.get_ports().first().copied().unwrap_or(5432)))
}

fn set(env: &SimEnv, f: impl FnOnce(&mut Receiver)) {
    f(&mut env.shared().lock().receiver);
}

/// Runs until the postmaster stops.
pub async fn run(
    env: SimEnv,
    mut conninfo: watch::Receiver<String>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        if *stopping.borrow() {
            set(&env, |r| r.status = None);
            return;
        }
        let current = conninfo.borrow_and_update().clone();
        tokio::select! {
            biased;
            _ = stopping.changed() => {}
            _ = conninfo.changed() => {
                set(&env, |r| { r.status = None; r.sender = None; });
            }
            () = stream_from(&env, &current) => {
                set(&env, |r| { r.status = None; r.sender = None; });
                SimClock.sleep(RETRY).await;
            }
        }
    }
}

/// Streams from `conninfo` until the connection fails.
async fn stream_from(env: &SimEnv, conninfo: &str) {
    let Some((host, port)) = upstream(conninfo) else {
        return;
    };
    let connect = turmoil::net::TcpStream::connect((host.as_str(), port));
    let Ok(Ok(stream)) = compute_ctl::env::timeout(&SimClock, CONNECT_TIMEOUT, connect).await
    else {
        return;
    };
    let (r, mut w) = stream.into_split();
    if w.write_all(b"STREAM\n").await.is_err() {
        return;
    }
    let mut lines = BufReader::new(r).lines();
    let sender = format!("{host}:{port}");
    // Silence longer than this means the upstream is gone (wal_receiver_timeout).
    let silence = crate::world::storage::STREAM_EVERY * 10;
    while let Ok(Ok(Some(line))) =
        compute_ctl::env::timeout(&SimClock, silence, lines.next_line()).await
    {
        let mut parts = line.strip_prefix("LSN ").unwrap_or("").split(' ');
        let (Some(lsn), tli) = (
            parts.next().and_then(|v| v.parse::<u64>().ok()),
            parts
                .next()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1),
        ) else {
            return;
        };
        set(env, |r| {
            if lsn < r.replay {
                // Behind this standby: nothing to stream yet.
                r.status = Some("waiting");
                r.sender = None;
            } else {
                r.status = Some("streaming");
                r.sender = Some(sender.clone());
                r.receive = lsn;
                r.replay = lsn;
                // recovery_target_timeline = 'latest': follow a promotion.
                r.timeline = r.timeline.max(tli);
            }
        });
    }
}
