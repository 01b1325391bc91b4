//! One client session of the simulated Postgres: startup (trust auth),
//! simple queries executed against the catalog model with seeded latency and
//! `statement_timeout`, terminate. Every statement is logged with its
//! simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use compute_ctl::env::{Clock, Processes, Rng, Signal};
use tokio::sync::watch;
use turmoil::net::TcpStream;

use super::exec::{self, Reply};
use super::wire::{self, Frontend, Out};
use crate::events::{Event, ReloadVia};
use crate::pgmodel::catalog::PgErr;
use crate::pgmodel::{PgPhase, StmtKind};
use crate::world::env::SimEnv;
use crate::world::shared::now_us;

/// What a session knows about its server.
#[derive(Clone)]
pub struct Server {
    pub env: SimEnv,
    pub pid: u32,
    pub pgdata: std::path::PathBuf,
    /// Becomes true when the postmaster stops: sessions end.
    pub stopping: watch::Receiver<bool>,
}

/// Parses `-c name=value` pairs of the startup `options`.
fn startup_options(options: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut it = options.split_whitespace();
    while let Some(w) = it.next() {
        let kv = if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("-c")
        };
        if let Some((k, v)) = kv.and_then(|kv| kv.split_once('=')) {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// `statement_timeout` in milliseconds (0 = none), from the session options.
fn statement_timeout(opts: &BTreeMap<String, String>) -> Option<Duration> {
    let v = opts.get("statement_timeout")?;
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let ms = if v.ends_with('s') && !v.ends_with("ms") {
        n * 1000
    } else {
        n
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Serves one connection until the client leaves or the server stops.
pub async fn serve(mut stream: TcpStream, server: Server) {
    let mut stopping = server.stopping.clone();
    tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => {}
        _ = run(&mut stream, &server) => {}
    }
}

async fn run(stream: &mut TcpStream, server: &Server) -> std::io::Result<()> {
    let Some(startup) = wire::read_startup(stream).await? else {
        return Ok(());
    };
    let user = startup.params.get("user").cloned().unwrap_or_default();
    let db = startup
        .params
        .get("database")
        .cloned()
        .unwrap_or_else(|| user.clone());
    let app = startup
        .params
        .get("application_name")
        .cloned()
        .unwrap_or_default();
    let opts = startup_options(startup.params.get("options").map_or("", |s| s.as_str()));
    let timeout = statement_timeout(&opts);
    let mut out = Out::default();
    let login = server.env.shared().lock().catalog.check_login(&user, &db);
    if let Err(e) = login {
        out.error("FATAL", e.code, &e.message);
        return out.flush(stream).await;
    }
    out.auth_ok();
    out.parameter_status("server_version", "15.8");
    out.parameter_status("server_encoding", "UTF8");
    out.parameter_status("client_encoding", "UTF8");
    out.parameter_status("DateStyle", "ISO, MDY");
    out.parameter_status("integer_datetimes", "on");
    out.parameter_status("standard_conforming_strings", "on");
    out.backend_key(i32::try_from(server.pid).unwrap_or(0), 0);
    out.ready();
    out.flush(stream).await?;
    loop {
        match wire::read_message(stream).await? {
            Frontend::Terminate => return Ok(()),
            Frontend::Unsupported(tag) => {
                out.error(
                    "ERROR",
                    "0A000",
                    &format!("the simulated server speaks only the simple query protocol (got message {:?})", tag as char),
                );
                out.ready();
                out.flush(stream).await?;
            }
            Frontend::Query(sql) => {
                let ctx = QueryCtx {
                    server,
                    user: &user,
                    db: &db,
                    app: &app,
                    timeout,
                };
                query(&ctx, &sql, &mut out).await;
                out.ready();
                out.flush(stream).await?;
            }
        }
    }
}

struct QueryCtx<'a> {
    server: &'a Server,
    user: &'a str,
    db: &'a str,
    app: &'a str,
    timeout: Option<Duration>,
}

/// Runs a simple Query (one or more statements, atomically).
async fn query(ctx: &QueryCtx<'_>, sql: &str, out: &mut Out) {
    let stmts = exec::split_statements(sql);
    if stmts.is_empty() {
        out.empty_query();
        return;
    }
    let env = &ctx.server.env;
    let multi = stmts.len() > 1;
    // A failing statement changes nothing itself; earlier statements of the
    // same Query are rolled back with it.
    let before = multi.then(|| env.shared().lock().catalog.clone());
    for stmt in stmts {
        let (kind, outcome) = statement(ctx, stmt, multi).await;
        let ok = outcome.is_ok();
        // Client load is not logged: the invariants look at the
        // supervisor's statements, and load would dominate the trace.
        if ctx.app != crate::names::LOAD_APPLICATION {
            let t = now_us();
            env.shared().emit_at(
                t,
                Event::Statement {
                    app: ctx.app.into(),
                    db: ctx.db.into(),
                    kind,
                    sql: stmt.into(),
                    ok,
                },
            );
            if kind == StmtKind::Reload {
                env.shared().emit_at(
                    t,
                    Event::Reload {
                        via: ReloadVia::Sql,
                        ok,
                        error: None,
                    },
                );
            }
        }
        match outcome {
            Ok(Reply::Rows { columns, rows, tag }) => {
                out.row_description(&columns);
                for r in &rows {
                    out.data_row(r);
                }
                out.command_complete(&tag);
            }
            Ok(Reply::Command { tag, .. }) => out.command_complete(&tag),
            Err(e) => {
                // A failed statement aborts the implicit transaction of the Query.
                if let Some(before) = before {
                    env.shared().lock().catalog = before;
                }
                out.error("ERROR", e.code, &e.message);
                return;
            }
        }
    }
}

async fn statement(ctx: &QueryCtx<'_>, sql: &str, multi: bool) -> (StmtKind, Result<Reply, PgErr>) {
    if let Some(d) = crate::pgmodel::durable::parse(sql) {
        let server = ctx.server;
        return (
            StmtKind::Other,
            super::durable::run(&server.env, &server.pgdata, d).await,
        );
    }
    match exec::parse(sql, ctx.db) {
        Ok(parsed) => (parsed.kind(), run_parsed(ctx, &parsed, multi).await),
        Err(e) => (StmtKind::Invalid, Err(e)),
    }
}

async fn run_parsed(
    ctx: &QueryCtx<'_>,
    parsed: &exec::Parsed,
    multi: bool,
) -> Result<Reply, PgErr> {
    let env = &ctx.server.env;
    let knobs = env.shared().knobs();
    if knobs.crash_pg_at == Some(PgPhase::Query) && parsed.is_catalog_write() {
        env.shared().lock().knobs.crash_pg_at = None;
        env.shared().event(
            "fault_fired",
            serde_json::json!({"fault": "pg_crash", "phase": "query"}),
        );
        let _ = env.signal(ctx.server.pid, Signal::Kill);
        std::future::pending::<()>().await;
    }
    let latency = Duration::from_micros(200 + env.next_u64() % 800) + knobs.query_delay;
    let finished = if knobs.hung {
        // Postgres is unhealthy: nothing finishes; only statement_timeout ends it.
        match ctx.timeout {
            Some(t) => {
                env.sleep(t).await;
                false
            }
            None => std::future::pending().await,
        }
    } else if knobs.blocked {
        // Blocked (a lock held elsewhere) until the fault ends or statement_timeout.
        let unblocked = async {
            while env.shared().knobs().blocked {
                env.sleep(Duration::from_millis(10)).await;
            }
        };
        match ctx.timeout {
            Some(t) => compute_ctl::env::timeout(env, t, unblocked).await.is_ok(),
            None => {
                unblocked.await;
                true
            }
        }
    } else {
        match ctx.timeout {
            Some(t) if latency >= t => {
                env.sleep(t).await;
                false
            }
            _ => {
                env.sleep(latency).await;
                true
            }
        }
    };
    if !finished {
        return Err(PgErr::new(
            "57014",
            "canceling statement due to statement timeout",
        ));
    }
    if parsed.is_reload() {
        let _ = env.signal(ctx.server.pid, Signal::Hup);
    }
    let mut sh = env.shared().lock();
    if *parsed == exec::Parsed::Replication {
        let r = sh.receiver.clone();
        let lsn = |v: u64| Some(compute_ctl::storage::Lsn(v).to_string());
        let in_recovery = sh
            .loaded_config
            .as_deref()
            .is_some_and(|c| c.contains("primary_conninfo"));
        return Ok(Reply::Rows {
            columns: exec::replication_columns(),
            rows: vec![vec![
                r.status.map(str::to_string),
                r.sender.clone(),
                r.status.map(|_| r.timeline.max(1).to_string()),
                lsn(r.receive).filter(|_| in_recovery),
                lsn(r.replay).filter(|_| in_recovery),
                Some("not paused".into()),
            ]],
            tag: "SELECT 1".into(),
        });
    }
    exec::execute(&mut sh.catalog, parsed, ctx.user, ctx.db, multi)
}
