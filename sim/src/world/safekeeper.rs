//! A safekeeper of the durable-primary scenarios: a streaming standby of
//! whatever its `primary_conninfo` names (the compute announces itself),
//! whose WAL ([`crate::wal::SafekeeperWal`]) is durable and survives a
//! crash of its host. On [`SAFEKEEPER_PORT`] it speaks, sniffed by the
//! first byte, the Postgres protocol for the statements compute_ctl sends a
//! safekeeper (`POSITION_SQL`, the announce's read, `ALTER SYSTEM SET
//! primary_conninfo`, `pg_reload_conf()`, the "why no WAL sender" read)
//! and the line protocol for `BASEBACKUP` and a catching-up compute's
//! stream ([`crate::world::walstream`]).
//!
//! Its WAL receiver flushes each batch after its `flush_delay_ms` (its
//! lag), emits [`Event::SafekeeperFlushed`] and answers `F <lsn>`.

use std::time::Duration;

use compute_ctl::env::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::events::Event;
use crate::names::SAFEKEEPER_PORT;
use crate::world::env::SimClock;
use crate::world::pg::wire::{self, Frontend, Out};
use crate::world::shared::Shared;
use crate::world::walstream::{self, Msg, Upstream};

/// How long a WAL receiver waits before it tries again
/// (`wal_retrieve_retry_interval`).
const RETRY: Duration = Duration::from_millis(200);

/// Runs the safekeeper host `name` until it is crashed.
pub async fn serve(shared: Shared, name: &'static str) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", SAFEKEEPER_PORT)).await?;
    shared
        .lock()
        .wal
        .safekeepers
        .entry(name.to_string())
        .or_default()
        .streaming = false;
    tokio::spawn(receive(shared.clone(), name));
    let (_never, stopping) = tokio::sync::watch::channel(false);
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut first = [0u8; 1];
            if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] == 0 {
                let _ = serve_sql(stream, &shared, name).await;
                return;
            }
            // BASEBACKUP, or a compute catching up (START ...).
            if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] == b'B' {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() != "BASEBACKUP" || w.write_all(b"OK 0/0\n").await.is_err() {
                        return;
                    }
                }
                return;
            }
            walstream::serve(shared, stream, Upstream::Safekeeper(name), stopping).await;
        });
    }
}

/// The WAL receiver: streams from `primary_conninfo` (restarting when a
/// reload changes it), retries after [`RETRY`].
async fn receive(shared: Shared, name: &'static str) {
    loop {
        let conninfo = shared.lock().wal.safekeepers[name].conninfo.clone();
        if let Some((host, port, app)) = walstream::upstream_of(&conninfo) {
            stream_from(&shared, name, &conninfo, &host, port, &app).await;
        }
        set_streaming(&shared, name, false);
        SimClock.sleep(RETRY).await;
    }
}

fn set_streaming(shared: &Shared, name: &str, on: bool) {
    if let Some(s) = shared.lock().wal.safekeepers.get_mut(name) {
        s.streaming = on;
    }
}

fn conninfo_changed(shared: &Shared, name: &str, conninfo: &str) -> bool {
    shared.lock().wal.safekeepers[name].conninfo != conninfo
}

async fn stream_from(
    shared: &Shared,
    name: &str,
    conninfo: &str,
    host: &str,
    port: u16,
    app: &str,
) {
    let Some(stream) = walstream::connect(host, port).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let (tli, end) = {
        let sh = shared.lock();
        let wal = &sh.wal.safekeepers[name].wal;
        (wal.tli, wal.end())
    };
    if w.write_all(walstream::start_line(app, tli, end).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    loop {
        if conninfo_changed(shared, name, conninfo) {
            return;
        }
        let Some(msg) = walstream::next_msg(&mut lines).await else {
            return;
        };
        match msg {
            Msg::Refused(why) => {
                shared.event(
                    "safekeeper_refused",
                    serde_json::json!({"safekeeper": name, "why": why}),
                );
                return;
            }
            Msg::History(h, t) => {
                let mut sh = shared.lock();
                if let Some(sk) = sh.wal.safekeepers.get_mut(name) {
                    sk.wal.adopt_history(&h, t);
                    sk.streaming = true;
                }
            }
            Msg::Keepalive => {
                set_streaming(shared, name, true);
            }
            Msg::Batch(recs) => {
                let delay = {
                    let mut sh = shared.lock();
                    let sk = sh.wal.safekeepers.get_mut(name);
                    sk.map_or(0, |s| {
                        s.streaming = true;
                        s.flush_delay_ms + s.fault_delay_ms
                    })
                };
                if delay > 0 {
                    SimClock.sleep(Duration::from_millis(delay)).await;
                }
                let flushed = {
                    let mut sh = shared.lock();
                    let Some(sk) = sh.wal.safekeepers.get_mut(name) else {
                        return;
                    };
                    let end = sk.wal.end();
                    let new: Vec<_> = recs.iter().copied().filter(|r| r.lsn > end).collect();
                    sk.wal.receive(&new);
                    new.first().map(|first| Event::SafekeeperFlushed {
                        name: name.to_string(),
                        lsn: sk.wal.end(),
                        tli: sk.wal.tli,
                        prev: first.prev,
                        chain: sk.wal.chain(),
                        ids: new.iter().filter(|r| r.id != 0).map(|r| r.id).collect(),
                    })
                };
                if let Some(ev) = flushed {
                    shared.emit(ev);
                }
            }
        }
        let end = shared.lock().wal.safekeepers[name].wal.end();
        if w.write_all(format!("F {end}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// What one statement answers: columns and one row, or an error.
type Answer = Result<Option<(Vec<&'static str>, Vec<Option<String>>)>, String>;

/// One statement a safekeeper understands.
///
/// `from_compute`: the session is the `compute` host's, whose boot the
/// position answer is recorded under ([`Event::PositionAnswered`], what
/// `checkers/fork.rs` reads as the sync of that boot's start); a second
/// compute (the promote's replica) asking the same safekeeper is not
/// that start's sync, nor is a question after that boot's Postgres
/// promoted (a start that joined an empty branch waits for each
/// safekeeper's replay before `running`: they follow our timeline then).
fn answer(shared: &Shared, name: &str, sql: &str, from_compute: bool) -> Answer {
    let lsn = |v: u64| Some(compute_ctl::storage::Lsn(v).to_string());
    let mut sh = shared.lock();
    let boot = sh.boot;
    let syncing = sh.wal.compute.promoted_boot != Some(boot);
    let Some(sk) = sh.wal.safekeepers.get_mut(name) else {
        return Err("the safekeeper is not set up".into());
    };
    if sql == compute_ctl::storage::POSITION_SQL {
        let end = sk.wal.end();
        drop(sh);
        if from_compute && syncing {
            shared.emit(Event::PositionAnswered {
                name: name.to_string(),
                boot,
                lsn: end,
            });
        }
        return Ok(Some((
            vec!["pg_is_in_recovery", "flushed", "replayed"],
            vec![Some("t".into()), lsn(end), lsn(end)],
        )));
    }
    if sql == compute_ctl::storage::NEWEST_TIMELINE_SQL {
        return Ok(Some(newest_timeline_row(&sk.wal, sk.claimed)));
    }
    let claim = compute_ctl::storage::CLAIM_SETTING;
    if sql == compute_ctl::storage::CLAIM_LOOK_SQL {
        return Ok(Some((
            vec!["substring"],
            vec![sk.claimed.map(|c| c.to_string())],
        )));
    }
    if let Some(v) = sql.strip_prefix(&format!("SET {claim} = ")) {
        // A session's placeholder: lets the `ALTER SYSTEM` after it through.
        return claim_value(v).map(|_| None);
    }
    if let Some(v) = sql.strip_prefix(&format!("ALTER SYSTEM SET {claim} = ")) {
        // In `postgresql.auto.conf` when it returns: what a start reads.
        sk.claimed = Some(claim_value(v)?);
        return Ok(None);
    }
    if sql == "SELECT pg_is_in_recovery(), current_setting('primary_conninfo')" {
        return Ok(Some((
            vec!["pg_is_in_recovery", "current_setting"],
            vec![Some("t".into()), Some(sk.conninfo.clone())],
        )));
    }
    if let Some(v) = sql.strip_prefix("ALTER SYSTEM SET primary_conninfo = ") {
        let v = v.trim();
        let Some(v) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
            return Err(format!("syntax error at or near {v}"));
        };
        sk.pending_conninfo = Some(v.replace("''", "'"));
        return Ok(None);
    }
    if sql.eq_ignore_ascii_case("CHECKPOINT") {
        // A restartpoint, on the timeline replay reached.
        sk.restartpoint_tli = Some(sk.wal.segment_tli());
        return Ok(None);
    }
    if sql.eq_ignore_ascii_case("SELECT pg_reload_conf()") {
        if let Some(c) = sk.pending_conninfo.take() {
            sk.conninfo = c;
        }
        return Ok(Some((vec!["pg_reload_conf"], vec![Some("t".into())])));
    }
    if sql == compute_ctl::storage::ABSENT_SQL {
        let (end, tli) = (sk.wal.end(), sk.wal.tli);
        let streaming = sk.streaming;
        return Ok(Some((
            vec![
                "r",
                "status",
                "receive",
                "replay",
                "received_tli",
                "timeline_id",
                "max",
            ],
            vec![
                Some("t".into()),
                streaming.then(|| "streaming".into()),
                lsn(end),
                lsn(end),
                streaming.then(|| tli.to_string()),
                Some(sk.checkpoint_tli().to_string()),
                Some(format!("{:08X}", sk.wal.segment_tli())),
            ],
        )));
    }
    Err(format!(
        "the simulated safekeeper does not understand: {sql}"
    ))
}

/// The answer to `NEWEST_TIMELINE_SQL` of a server with `wal` (and a
/// timeline claimed on it): its newest segment's timeline (a standby that
/// fetched a newer timeline's history file but none of its WAL has no
/// segment of it), its newest history file's, the claim.
pub(crate) fn newest_timeline_row(
    wal: &crate::wal::Wal,
    claimed: Option<u32>,
) -> (Vec<&'static str>, Vec<Option<String>>) {
    let history = wal.history_tli();
    // Its newest history file: the ancestors of the timeline it follows.
    let content = wal.history_file();
    (
        vec!["max", "max", "substring", "pg_read_file"],
        vec![
            Some(format!("{:08X}", wal.segment_tli())),
            (history > 0).then(|| format!("{history:08X}")),
            claimed.map(|c| c.to_string()),
            (history > 0).then_some(content),
        ],
    )
}

/// The timeline in `'N'`.
fn claim_value(v: &str) -> Result<u32, String> {
    v.trim()
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("invalid value for parameter \"compute_ctl.claimed_timeline\": {v}"))
}

async fn serve_sql(
    mut stream: turmoil::net::TcpStream,
    shared: &Shared,
    name: &str,
) -> std::io::Result<()> {
    if wire::read_startup(&mut stream).await?.is_none() {
        return Ok(());
    }
    let from_compute = stream
        .peer_addr()
        .ok()
        .and_then(|a| turmoil::reverse_lookup(a.ip()))
        .is_some_and(|h| h == crate::names::COMPUTE);
    let mut out = Out::default();
    out.auth_ok();
    out.parameter_status("server_version", "15.8");
    out.parameter_status("integer_datetimes", "on");
    out.parameter_status("standard_conforming_strings", "on");
    out.backend_key(1, 0);
    out.ready();
    out.flush(&mut stream).await?;
    loop {
        match wire::read_message(&mut stream).await? {
            Frontend::Query(sql) => {
                for stmt in crate::world::pg::exec::split_statements(&sql) {
                    match answer(shared, name, stmt, from_compute) {
                        Ok(Some((cols, row))) => {
                            let cols: Vec<String> = cols.into_iter().map(String::from).collect();
                            out.row_description(&cols);
                            out.data_row(&row);
                            out.command_complete("SELECT 1");
                        }
                        Ok(None) => out.command_complete("ALTER SYSTEM"),
                        Err(e) => {
                            out.error("ERROR", "42601", &e);
                            break;
                        }
                    }
                }
            }
            Frontend::Terminate => return Ok(()),
            Frontend::Unsupported(_) => out.error("ERROR", "0A000", "simple query protocol only"),
        }
        out.ready();
        out.flush(&mut stream).await?;
    }
}
