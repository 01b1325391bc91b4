//! The simulated postmaster: `postgres -D <pgdata>` started through
//! `Processes::spawn`. It reads `<pgdata>/postgresql.conf` from the sim Fs,
//! takes a seeded start-up delay, listens on the configured port, re-reads
//! the config on SIGHUP, shuts down on SIGINT/SIGTERM (fast) and SIGQUIT
//! (immediate), dies on SIGKILL, and can be crashed by the fault schedule.

use std::io;
use std::path::{Path, PathBuf};

use compute_ctl::env::{CommandSpec, ExitInfo, Signal};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::receiver;
use super::session::{self, Server};
use crate::events::{Event, ReloadVia};
use crate::pgmodel::PgPhase;
use crate::pgmodel::guc::parse_conf;
use crate::world::env::{SimChild, SimEnv};
use crate::world::procs::arg_value;
use compute_ctl::env::Clock;

/// Starts a postmaster for `postgres -D <pgdata>`.
pub fn spawn(env: &SimEnv, cmd: &CommandSpec) -> io::Result<SimChild> {
    let pgdata = arg_value(&cmd.args, "-D", "--pgdata").map(PathBuf::from);
    let (pid, signals) = env.procs().register();
    let (exit_tx, exit_rx) = watch::channel(None);
    env.shared()
        .event("spawn", json!({"pid": pid, "cmd": cmd.display()}));
    let boot = env.shared().lock().boot;
    env.shared()
        .emit(crate::events::Event::PostmasterSpawned { boot, pid });
    let env2 = env.clone();
    tokio::spawn(async move {
        let exit = run(&env2, pid, pgdata, signals).await;
        env2.procs().exited(pid);
        env2.shared().lock().loaded_config = None;
        env2.shared().event(
            "exit",
            json!({"pid": pid, "code": exit.code, "signal": exit.signal}),
        );
        let _ = exit_tx.send(Some(exit));
    });
    Ok(SimChild { pid, exit: exit_rx })
}

fn code(c: i32) -> ExitInfo {
    ExitInfo {
        code: Some(c),
        signal: None,
    }
}

fn killed(s: i32) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: Some(s),
    }
}

/// `postgresql.conf`, then `postgresql.auto.conf` (`ALTER SYSTEM`; its
/// lines win, as Postgres reads it last).
fn read_conf(env: &SimEnv, pgdata: &Path) -> io::Result<String> {
    let bytes = env.fs().read(&pgdata.join("postgresql.conf"))?;
    let mut conf =
        String::from_utf8(bytes).map_err(|_| io::Error::other("postgresql.conf is not UTF-8"))?;
    if let Ok(auto) = env.fs().read(&pgdata.join("postgresql.auto.conf")) {
        conf.push('\n');
        conf.push_str(&String::from_utf8_lossy(&auto));
    }
    Ok(conf)
}

fn take_crash(env: &SimEnv, phase: PgPhase) -> bool {
    let mut sh = env.shared().lock();
    if sh.knobs.crash_pg_at == Some(phase) {
        sh.knobs.crash_pg_at = None;
        let t = crate::world::shared::now_us();
        sh.log.trace.push(
            t,
            "fault_fired",
            json!({"fault": "pg_crash", "phase": phase}),
        );
        true
    } else {
        false
    }
}

async fn run(
    env: &SimEnv,
    pid: u32,
    pgdata: Option<PathBuf>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> ExitInfo {
    let Some(pgdata) = pgdata else {
        return code(1);
    };
    if !env.fs().exists(&pgdata.join("PG_VERSION")) {
        return code(1);
    }
    let Ok(conf) = read_conf(env, &pgdata) else {
        return code(1);
    };
    let settings = parse_conf(&conf);
    let port: u16 = settings
        .get("port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    // Start-up (recovery, shared memory): signals other than KILL wait.
    let delay = env.jitter(20, 150) + env.shared().knobs().pg_start_delay;
    tokio::select! {
        biased;
        sig = signals.recv() => match sig {
            Some(Signal::Kill) | None => return killed(9),
            Some(_) => return code(0),
        },
        () = env.sleep(delay) => {}
    }
    if take_crash(env, PgPhase::Startup) {
        return killed(6);
    }
    let listener = match turmoil::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            env.shared().event(
                "pg_bind_failed",
                json!({"port": port, "error": e.to_string()}),
            );
            return code(1);
        }
    };
    env.shared().lock().loaded_config = Some(conf);
    env.shared()
        .event("pg_ready", json!({"pid": pid, "port": port}));
    let (stop_tx, stop_rx) = watch::channel(false);
    // A standby streams from primary_conninfo; a reload with another one
    // restarts the WAL receiver (as Postgres 13+ does).
    let standby = env.fs().exists(&pgdata.join("standby.signal"));
    let (conninfo_tx, conninfo_rx) = watch::channel(
        settings
            .get("primary_conninfo")
            .cloned()
            .unwrap_or_default(),
    );
    {
        // The WAL model (`crate::wal`): a standby until promoted, no WAL
        // senders yet.
        // Recovery targets the newest of an unbroken run of history files
        // in pg_wal: a real one written there before the start (an empty
        // branch the new primary joins) becomes its timeline.
        let joined = {
            let fs = env.fs();
            let mut top = None;
            let mut t = env.shared().lock().wal.compute.wal.tli;
            loop {
                let path = pgdata
                    .join("pg_wal")
                    .join(compute_ctl::storage::history_file_name(t + 1));
                match fs.read(&path) {
                    Ok(content) => {
                        t += 1;
                        top = Some((t, String::from_utf8_lossy(&content).to_string()));
                    }
                    Err(_) => break,
                }
            }
            top.map(|(t, content)| (t, compute_ctl::storage::parse_history(&content)))
                .filter(|(_, h)| !h.is_empty())
        };
        let mut sh = env.shared().lock();
        let c = &mut sh.wal.compute;
        if let Some((t, history)) = joined {
            let history: Vec<(u32, u64)> = history.into_iter().map(|(p, l)| (p, l.0)).collect();
            c.wal.adopt_history(&history, t);
        }
        c.in_recovery = standby;
        c.primary_since = (!standby).then(|| c.wal.end());
        c.senders.clear();
        c.shutting_down = false;
    }
    if standby && super::catchup::names_safekeeper(&conninfo_rx.borrow()) {
        tokio::spawn(super::catchup::run(
            env.clone(),
            conninfo_rx,
            stop_rx.clone(),
        ));
    } else if standby {
        tokio::spawn(receiver::run(env.clone(), conninfo_rx, stop_rx.clone()));
    }
    let server = Server {
        env: env.clone(),
        pid,
        pgdata: pgdata.clone(),
        stopping: stop_rx,
    };
    let exit = loop {
        tokio::select! {
            biased;
            sig = signals.recv() => match sig {
                Some(Signal::Hup) => {
                    if take_crash(env, PgPhase::Reload) {
                        break killed(6);
                    }
                    reload(env, &pgdata);
                    if let Some(conf) = env.shared().lock().loaded_config.clone() {
                        let c = parse_conf(&conf).get("primary_conninfo").cloned().unwrap_or_default();
                        conninfo_tx.send_if_modified(|cur| {
                            let changed = *cur != c;
                            *cur = c;
                            changed
                        });
                    }
                }
                Some(Signal::Int | Signal::Term) => {
                    drain_senders(env).await;
                    break code(0);
                }
                Some(Signal::Quit) => break code(0),
                Some(Signal::Kill) | None => break killed(9),
            },
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(stream, server.clone()));
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    exit
}

/// A smart or fast shutdown: backends stop writing, then the WAL senders
/// send what is left and wait
/// until their standbys flushed it (Postgres' `WalSndDone`), each given up
/// after [`crate::world::walstream::SILENCE`] (`wal_sender_timeout`).
async fn drain_senders(env: &SimEnv) {
    // Backends are told to stop first: no commit writes WAL from now on.
    env.shared().lock().wal.compute.shutting_down = true;
    let until = env.now() + crate::world::walstream::SILENCE;
    while env.now() < until {
        let drained = {
            let sh = env.shared().lock();
            let c = &sh.wal.compute;
            let end = c.wal.end();
            c.in_recovery || c.senders.values().all(|s| s.flush >= end)
        };
        if drained {
            return;
        }
        env.sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A client session, or (sniffed by the first byte: a startup packet
/// begins with its length) a safekeeper's WAL stream (`crate::world::walstream`).
async fn serve_connection(mut stream: turmoil::net::TcpStream, server: Server) {
    let mut first = [0u8; 1];
    if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] != 0 {
        let shared = server.env.shared().clone();
        crate::world::walstream::serve(
            shared,
            stream,
            crate::world::walstream::Upstream::Compute,
            server.stopping.clone(),
        )
        .await;
        return;
    }
    session::serve(stream, server).await;
}

/// SIGHUP: re-read postgresql.conf (or, under the reload-failure fault, log
/// the error and keep the old settings, as Postgres does).
fn reload(env: &SimEnv, pgdata: &Path) {
    let fails = env.shared().knobs().reload_fails;
    match read_conf(env, pgdata) {
        Ok(conf) if !fails => {
            env.shared().lock().loaded_config = Some(conf);
            env.shared().emit(Event::Reload {
                via: ReloadVia::Signal,
                ok: true,
                error: None,
            });
        }
        _ => env.shared().emit(Event::Reload {
            via: ReloadVia::Signal,
            ok: false,
            error: Some("configuration file contains errors; unaffected changes were applied"),
        }),
    }
}
