//! The storage hosts: stand-ins for the pageserver that serve base backups
//! over turmoil TCP (so a crashed or partitioned storage makes
//! `pg_basebackup` fail for real) and stream their WAL position to a
//! replica (`STREAM`: one `LSN n` line every [`STREAM_EVERY`]). Each host's
//! WAL advances while it runs; a second storage follows the first, some
//! bytes behind, so both hold the same data.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::names::SAFEKEEPER_PORT;
use crate::names::STORAGE_PORT;
use crate::world::env::SimClock;
use crate::world::shared::Shared;
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
            if sh.wal.enabled && name == crate::names::STORAGE {
                // The pageserver of a primary with safekeepers (`crate::wal`).
                sh.wal.ingest_pageserver();
                continue;
            }
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
        let (mut stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            // A Postgres client (the supervisor asking for the WAL position)
            // starts with a length; the line protocol with a letter.
            let mut first = [0u8; 1];
            if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] == 0 {
                let _ = serve_position(stream, &shared, name, false).await;
                return;
            }
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

/// A safekeeper host: its flushed WAL follows `storage`'s by `lag` bytes;
/// it answers the supervisor's position query over the Postgres protocol.
pub async fn safekeeper(shared: Shared, name: &'static str, lag: u64) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", SAFEKEEPER_PORT)).await?;
    let ticker = shared.clone();
    tokio::spawn(async move {
        loop {
            SimClock.sleep(STREAM_EVERY).await;
            let mut sh = ticker.lock();
            if sh.wal.enabled && name == crate::names::STORAGE {
                // The pageserver of a primary with safekeepers (`crate::wal`).
                sh.wal.ingest_pageserver();
                continue;
            }
            let up = sh
                .storage_wal
                .get(crate::names::STORAGE)
                .copied()
                .unwrap_or(0);
            let own = sh.storage_wal.get(name).copied().unwrap_or(0);
            sh.storage_wal
                .insert(name.to_string(), own.max(up.saturating_sub(lag)));
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = serve_position(stream, &shared, name, true).await;
        });
    }
}

/// Answers `POSITION_SQL` (and nothing else) with `name`'s WAL position;
/// a safekeeper's answer (`ack`) is recorded as an acknowledgement.
async fn serve_position(
    mut stream: turmoil::net::TcpStream,
    shared: &Shared,
    name: &str,
    ack: bool,
) -> std::io::Result<()> {
    use crate::world::pg::wire::{self, Frontend, Out};
    if wire::read_startup(&mut stream).await?.is_none() {
        return Ok(());
    }
    let mut out = Out::default();
    out.auth_ok();
    out.parameter_status("server_version", "15.8");
    out.parameter_status("integer_datetimes", "on");
    out.backend_key(1, 0);
    out.ready();
    out.flush(&mut stream).await?;
    loop {
        match wire::read_message(&mut stream).await? {
            Frontend::Query(sql) if sql == compute_ctl::storage::POSITION_SQL => {
                let wal = {
                    let sh = shared.lock();
                    if sh.wal.enabled && !ack {
                        sh.wal.pageserver.end()
                    } else {
                        sh.storage_wal.get(name).copied().unwrap_or(0)
                    }
                };
                if ack {
                    shared.emit(crate::events::Event::SafekeeperAcked {
                        name: name.to_string(),
                        lsn: wal,
                    });
                }
                let lsn = Some(compute_ctl::storage::Lsn(wal).to_string());
                out.row_description(&["in_recovery".into(), "flushed".into(), "replayed".into()]);
                out.data_row(&[Some("f".into()), lsn.clone(), lsn]);
                out.command_complete("SELECT 1");
            }
            Frontend::Query(_) => out.error(
                "ERROR",
                "42601",
                "the simulated storage answers only the position query",
            ),
            Frontend::Terminate => return Ok(()),
            Frontend::Unsupported(_) => out.error("ERROR", "0A000", "simple query protocol only"),
        }
        out.ready();
        out.flush(&mut stream).await?;
    }
}
