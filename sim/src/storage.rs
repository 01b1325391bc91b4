//! The storage hosts: stand-ins for the pageserver that serve base backups
//! over turmoil TCP (so a crashed or partitioned storage makes
//! `pg_basebackup` fail for real) and stream their WAL position to a
//! replica (`STREAM`: one `LSN n` line every [`STREAM_EVERY`]). Each host's
//! WAL advances while it runs; a second storage follows the first, some
//! bytes behind, so both hold the same data.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::env::SimClock;
use crate::procs::STORAGE_PORT;
use crate::shared::Shared;
use compute_ctl::env::Clock;

/// How often the WAL advances and a streaming replica hears of it.
pub const STREAM_EVERY: Duration = Duration::from_millis(100);
/// How far the WAL of a primary storage advances per step (bytes).
const WAL_STEP: u64 = 8192;
/// How far a following storage stays behind the one it follows.
const FOLLOW_LAG: u64 = 4 * WAL_STEP;

/// Serves base backups and WAL until the host is stopped. `follows`: the
/// storage whose WAL this one replays.
pub async fn serve(
    shared: Shared,
    name: &'static str,
    follows: Option<&'static str>,
) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", STORAGE_PORT)).await?;
    let ticker = shared.clone();
    tokio::spawn(async move {
        loop {
            SimClock.sleep(STREAM_EVERY).await;
            let mut sh = ticker.lock();
            let promoted = sh.promoted.contains(name);
            let next = match follows.filter(|_| !promoted) {
                None => sh.storage_wal.get(name).copied().unwrap_or(0x0100_0000) + WAL_STEP,
                Some(up) => {
                    let lag = sh.storage_lag.unwrap_or(FOLLOW_LAG);
                    let up = sh.storage_wal.get(up).copied().unwrap_or(0);
                    let own = sh.storage_wal.get(name).copied().unwrap_or(0);
                    own.max(up.saturating_sub(lag))
                }
            };
            sh.storage_wal.insert(name.to_string(), next);
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            // One answer per request line (the client re-sends requests
            // that a partition swallowed).
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.trim() {
                    "BASEBACKUP" => {
                        shared.lock().basebackups += 1;
                        if w.write_all(b"OK 0/16B3748\n").await.is_err() {
                            return;
                        }
                    }
                    "STREAM" => loop {
                        let (wal, tli) = {
                            let sh = shared.lock();
                            let wal = sh.storage_wal.get(name).copied().unwrap_or(0);
                            (wal, if sh.promoted.contains(name) { 2 } else { 1 })
                        };
                        if w.write_all(format!("LSN {wal} {tli}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        SimClock.sleep(STREAM_EVERY).await;
                    },
                    _ => return,
                }
            }
        });
    }
}
