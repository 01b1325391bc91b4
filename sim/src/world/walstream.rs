//! WAL streaming between simulated servers over turmoil TCP (so a crash or
//! a partition cuts it for real), as a line protocol:
//!
//! - standby -> upstream: `START <application_name> <tli> <lsn>` (where its
//!   WAL ends), then `F <lsn>` whenever it flushed (also its keepalive);
//! - upstream -> standby: `ERR <reason>` (then it closes: Postgres'
//!   walsender refusing, see [`crate::wal::Wal::can_stream`]), `H <history>`
//!   (the upstream's timeline history, when the standby is on another
//!   timeline), `W <record>;<record>...` (a batch), `K` (keepalive).
//!
//! A link silent for [`SILENCE`] is given up (`wal_receiver_timeout` /
//! `wal_sender_timeout`): turmoil loses what is sent into a partition for
//! good, so a stream never recovers by itself; the standby reconnects.

use std::time::Duration;

use compute_ctl::env::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpStream;

use crate::wal::{Record, Wal};
use crate::world::env::SimClock;
use crate::world::shared::{Shared, SharedInner};

/// A link silent this long is dead.
pub const SILENCE: Duration = Duration::from_secs(1);
/// How often an idle side says it is alive.
pub const KEEPALIVE: Duration = Duration::from_millis(200);
/// How often the upstream looks for new WAL to send.
const POLL: Duration = Duration::from_millis(10);
/// Most records per batch line.
const BATCH: usize = 64;

/// Whose WAL an upstream sends.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// The compute's Postgres (a primary; it refuses while in recovery).
    Compute,
    /// A safekeeper (to the catching-up compute).
    Safekeeper(&'a str),
}

fn wal_of<'s>(sh: &'s SharedInner, up: Upstream<'_>) -> Result<&'s Wal, String> {
    match up {
        Upstream::Compute if sh.wal.compute.in_recovery => {
            Err("recovery is in progress: this server streams only once promoted".into())
        }
        Upstream::Compute => Ok(&sh.wal.compute.wal),
        Upstream::Safekeeper(name) => sh
            .wal
            .safekeepers
            .get(name)
            .map(|s| &s.wal)
            .ok_or_else(|| format!("no safekeeper {name}")),
    }
}

/// A message from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Refused(String),
    History(Vec<(u32, u64)>, u32),
    Batch(Vec<Record>),
    Keepalive,
}

pub fn decode(line: &str) -> Option<Msg> {
    let line = line.trim_end();
    if let Some(r) = line.strip_prefix("ERR ") {
        return Some(Msg::Refused(r.to_string()));
    }
    if let Some(h) = line.strip_prefix("H ") {
        let (h, t) = Wal::decode_history(h)?;
        return Some(Msg::History(h, t));
    }
    if let Some(b) = line.strip_prefix("W ") {
        return b
            .split(';')
            .map(Record::decode)
            .collect::<Option<Vec<_>>>()
            .map(Msg::Batch);
    }
    (line == "K").then_some(Msg::Keepalive)
}

/// The START line of a standby.
pub fn start_line(app: &str, tli: u32, lsn: u64) -> String {
    format!("START {app} {tli} {lsn}\n")
}

/// What an upstream tells a standby of its WAL: a safekeeper (in recovery)
/// the timeline it replays and the history up to it
/// ([`Wal::replayed_view`]), the compute (a primary) its own.
fn served_view(wal: &Wal, up: Upstream<'_>) -> Wal {
    match up {
        Upstream::Safekeeper(_) => wal.replayed_view(),
        Upstream::Compute => wal.clone(),
    }
}

/// The timeline of [`served_view`].
fn served_tli(wal: &Wal, up: Upstream<'_>) -> u32 {
    match up {
        Upstream::Safekeeper(_) => wal.segment_tli(),
        Upstream::Compute => wal.tli,
    }
}

/// The upstream side: reads the START line, refuses or streams until the
/// link dies or `stopping` turns true. The compute registers the
/// standby's flushes as a WAL sender (`pg_stat_replication`).
pub async fn serve(
    shared: Shared,
    stream: TcpStream,
    up: Upstream<'_>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let Ok(Ok(Some(first))) =
        compute_ctl::env::timeout(&SimClock, SILENCE, lines.next_line()).await
    else {
        return;
    };
    let mut words = first.split_whitespace();
    let (Some("START"), Some(app), Some(tli), Some(lsn)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return;
    };
    let (Ok(tli), Ok(lsn)) = (tli.parse::<u32>(), lsn.parse::<u64>()) else {
        return;
    };
    let app = app.to_string();
    // Postgres' checks of the starting point, then its history file.
    let (hello, conn) = {
        let mut sh = shared.lock();
        let checked = wal_of(&sh, up).and_then(|wal| {
            let view = served_view(wal, up);
            view.can_stream(tli, lsn).map_err(|e| e.to_string())?;
            Ok((view.tli != tli).then(|| format!("H {}\n", view.encode_history())))
        });
        match checked {
            Err(e) => (Err(e), 0),
            Ok(h) => {
                let conn = if matches!(up, Upstream::Compute) {
                    sh.wal.next_conn += 1;
                    let conn = sh.wal.next_conn;
                    sh.wal
                        .compute
                        .senders
                        .insert(app.clone(), crate::wal::Sender { conn, flush: lsn });
                    conn
                } else {
                    0
                };
                (Ok(h), conn)
            }
        }
    };
    match hello {
        Err(e) => {
            let _ = w.write_all(format!("ERR {e}\n").as_bytes()).await;
            return;
        }
        Ok(Some(h)) => {
            if w.write_all(h.as_bytes()).await.is_err() {
                return;
            }
        }
        Ok(None) => {}
    }
    // The timeline this stream serves: once the upstream moves to another
    // one, the stream ends and the standby reconnects for the new history
    // (Postgres ends a cascading walsender at its server's timeline switch,
    // and every one of them at a promotion).
    let streamed_tli = wal_of(&shared.lock(), up).map(|w| served_tli(w, up)).ok();
    let mut sent = lsn;
    let mut last_heard = SimClock.now();
    let mut last_said = SimClock.now();
    loop {
        tokio::select! {
            biased;
            () = async { let _ = stopping.wait_for(|s| *s).await; } => break,
            line = lines.next_line() => match line {
                Ok(Some(l)) => {
                    last_heard = SimClock.now();
                    if let (Some(f), Upstream::Compute) = (l.strip_prefix("F ").and_then(|v| v.trim().parse::<u64>().ok()), up) {
                        let mut sh = shared.lock();
                        if let Some(s) = sh.wal.compute.senders.get_mut(&app).filter(|s| s.conn == conn) {
                            s.flush = s.flush.max(f);
                        }
                    }
                }
                _ => break,
            },
            () = SimClock.sleep(POLL) => {
                let now = SimClock.now();
                if now - last_heard > SILENCE {
                    break;
                }
                let batch: Vec<Record> = {
                    let sh = shared.lock();
                    match wal_of(&sh, up) {
                        Ok(wal) if Some(served_tli(wal, up)) != streamed_tli => break,
                        Ok(wal) => wal.after(sent).iter().take(BATCH).copied().collect(),
                        Err(_) => break,
                    }
                };
                let line = if let Some(last) = batch.last() {
                    sent = last.lsn;
                    let recs: Vec<String> = batch.iter().map(Record::encode).collect();
                    format!("W {}\n", recs.join(";"))
                } else if now - last_said >= KEEPALIVE {
                    "K\n".to_string()
                } else {
                    continue;
                };
                last_said = now;
                if w.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    if matches!(up, Upstream::Compute) {
        let mut sh = shared.lock();
        if sh
            .wal
            .compute
            .senders
            .get(&app)
            .is_some_and(|s| s.conn == conn)
        {
            sh.wal.compute.senders.remove(&app);
        }
    }
}

/// `host`, `port` and `application_name` of a `primary_conninfo`.
pub fn upstream_of(conninfo: &str) -> Option<(String, u16, String)> {
    let cfg: tokio_postgres::Config = conninfo.parse().ok()?;
    let host = match cfg.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        _ => return None,
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let app = cfg
        .get_application_name()
        .unwrap_or("walreceiver")
        .to_string();
    Some((host, port, app))
}

/// Connects to `host:port` within [`SILENCE`].
pub async fn connect(host: &str, port: u16) -> Option<TcpStream> {
    let attempt = TcpStream::connect((host, port));
    match compute_ctl::env::timeout(&SimClock, SILENCE, attempt).await {
        Ok(Ok(s)) => Some(s),
        _ => None,
    }
}

/// Reads the next upstream message, `None` when the link died or fell
/// silent for [`SILENCE`].
pub async fn next_msg(
    lines: &mut tokio::io::Lines<BufReader<turmoil::net::tcp::OwnedReadHalf>>,
) -> Option<Msg> {
    match compute_ctl::env::timeout(&SimClock, SILENCE, lines.next_line()).await {
        Ok(Ok(Some(l))) => decode(&l),
        _ => None,
    }
}
