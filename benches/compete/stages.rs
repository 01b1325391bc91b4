//! Where a small notify's time goes, stage by stage, with the client's
//! round trip counted: the production router served on loopback by
//! `http::serve`, the supervisor on `TokioEnv` and real Postgres, in this
//! process, so that the stages can be timed from inside.
//!
//! Two views of the same notifies:
//! - a timeline of every notify, from clocks read where things happen:
//!   the client sends; the router receives the head (a layer in front of
//!   the production router); the spec is accepted (`Compute::submit`'s
//!   "spec accepted" event); the supervisor picks it up (its "status
//!   change" to configuration); it has applied it ("status change" to
//!   running); the client has the answer. Events are timed by a tracing
//!   layer (the production code logs them at info anyway);
//! - each stage alone, repeated: a TCP connection, the body extracted and
//!   parsed (`SpecJson`), validation, the render of both config files, the
//!   write (`pg::write_config`, the same PGDATA file system), the SIGHUP,
//!   the answer's serialisation.
//!
//! The gaps of the timeline that no stage explains are wake-ups: a task
//! woken on another thread of a 2-core machine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ONE_SECOND: Duration = Duration::from_secs(1);

use anyhow::bail;
use axum::body::Body;
use axum::extract::FromRequest;
use compute_ctl::compute::ConnTarget;
use compute_ctl::env::TokioEnv;
use compute_ctl::http::json_body::SpecJson;
use compute_ctl::http::routes::configure::ConfigureRequest;
use compute_ctl::http::routes::status::StatusBody;
use compute_ctl::spec::{ComputeSpec, ValidationContext, validate};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::compute::SUPERUSER;
use crate::postgres::Scratch;
use crate::request_path::InProcess;
use crate::stats::{CaseResult, Summary};

/// A moment of a notify, as the production code logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Accepted,
    Begun,
    Applied,
    /// The router received the request head (the bench's layer).
    Routed,
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Vec<(Mark, Instant)>> = Mutex::new(Vec::new());

fn mark(m: Mark) {
    if RECORDING.load(Ordering::Relaxed) {
        let t = Instant::now();
        MARKS.lock().unwrap_or_else(|e| e.into_inner()).push((m, t));
    }
}

/// The message and the `to` field of an event.
#[derive(Default)]
struct Fields {
    message: String,
    to: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "to" => self.to = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Times the events a notify logs.
struct Clock;

impl<S: tracing::Subscriber> Layer<S> for Clock {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !RECORDING.load(Ordering::Relaxed) {
            return;
        }
        let t = Instant::now();
        let mut f = Fields::default();
        event.record(&mut f);
        let m = match (f.message.as_str(), f.to.as_str()) {
            ("spec accepted", _) => Mark::Accepted,
            ("status change", "configuration") => Mark::Begun,
            ("status change", "running") => Mark::Applied,
            _ => return,
        };
        MARKS.lock().unwrap_or_else(|e| e.into_inner()).push((m, t));
    }
}

/// Installs the clock (once per process): compute_ctl's info events only.
fn install_clock() {
    let filter = tracing_subscriber::filter::filter_fn(|m| {
        m.is_event() && m.target().starts_with("compute_ctl") && *m.level() <= tracing::Level::INFO
    });
    let _ = tracing_subscriber::registry()
        .with(Clock.with_filter(filter))
        .try_init();
}

fn us(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median of `v` in µs.
fn med(v: &[f64]) -> f64 {
    Summary::of(v).median_ms
}

/// The timeline's segments of one notify, µs.
#[derive(Default)]
struct Timeline {
    /// Client send → router has the head: the client's request, the
    /// loopback, hyper's head parse.
    to_router: Vec<f64>,
    /// Router → accepted: body read, parse, validation, submit.
    to_accepted: Vec<f64>,
    /// Accepted → the supervisor begins: its wake-up.
    wake: Vec<f64>,
    /// Begun → applied: render, write, SIGHUP, bookkeeping.
    apply: Vec<f64>,
    /// Applied → the client has the 200: the handler's wake-up, the answer
    /// serialised, the loopback, the client's read.
    answer: Vec<f64>,
    total: Vec<f64>,
}

/// The stage profile at `roles` roles, as one result row (µs in `extra`).
pub async fn stages(
    c: &InProcess,
    roles: usize,
    dbs: usize,
    reps: usize,
) -> anyhow::Result<CaseResult> {
    install_clock();
    let router = c.router.clone().layer(axum::middleware::map_request(
        |req: axum::extract::Request| async move {
            mark(Mark::Routed);
            req
        },
    ));
    let (url, _server) = c.serve(router).await?;
    let client = reqwest::Client::new();
    let ctx = ValidationContext {
        superuser: SUPERUSER.into(),
    };
    let mut tl = Timeline::default();
    let (mut connect, mut extract, mut check, mut render, mut write, mut signal, mut answer) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // The check after the reload (`pg_file_settings` on a held session, as
    // the supervisor's), and a bare round trip on the same session.
    let (mut file_check, mut round_trip) = (Vec::new(), Vec::new());
    let held = compute_ctl::pg::HeldSession::default();
    let scratch = Scratch::new("stages")?;
    let conn = ConnTarget {
        host: "127.0.0.1".into(),
        port: c.pg_port,
        user: SUPERUSER.into(),
        dbname: "postgres".into(),
    };
    let params_live = c.compute.params().clone();
    let mut params = params_live.clone();
    params.pgdata = scratch.path("pgdata");
    std::fs::create_dir_all(&params.pgdata)?;
    let env = TokioEnv::new();
    let pid = crate::postgres::postmaster_pid(&c.pgdata)?;
    let addr = url.trim_start_matches("http://").to_string();
    // A warm-up notify: the first one pays for the pool's connection.
    let mut n = 0;
    let mut next = |tag: &str| -> anyhow::Result<Vec<u8>> {
        n += 1;
        crate::request_path::body(roles, dbs, &format!("stages-{tag}-{n}"), 9000 + n)
    };
    post(&client, &url, next("warm")?).await?;
    for _ in 0..reps {
        // The timeline of one notify through the loopback HTTP server.
        let b = next("timeline")?;
        MARKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
        RECORDING.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        post(&client, &url, b).await?;
        let t1 = Instant::now();
        RECORDING.store(false, Ordering::Relaxed);
        let marks = std::mem::take(&mut *MARKS.lock().unwrap_or_else(|e| e.into_inner()));
        let at = |m: Mark| marks.iter().find(|(k, _)| *k == m).map(|(_, t)| *t);
        let (Some(routed), Some(accepted), Some(begun), Some(applied)) = (
            at(Mark::Routed),
            at(Mark::Accepted),
            at(Mark::Begun),
            at(Mark::Applied),
        ) else {
            bail!("a notify's timeline misses marks: {marks:?}");
        };
        tl.to_router.push(us(routed - t0));
        tl.to_accepted.push(us(accepted - routed));
        tl.wake.push(us(begun - accepted));
        tl.apply.push(us(applied - begun));
        tl.answer.push(us(t1 - applied));
        tl.total.push(us(t1 - t0));

        // Each stage alone.
        let t = Instant::now();
        let s = tokio::net::TcpStream::connect(&addr).await?;
        connect.push(us(t.elapsed()));
        drop(s);
        let b = next("extract")?;
        let req = axum::http::Request::post("/configure")
            .header("content-type", "application/json")
            .body(Body::from(b))?;
        let t = Instant::now();
        let SpecJson(parsed) = SpecJson::<ConfigureRequest>::from_request(req, &())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        extract.push(us(t.elapsed()));
        let spec: ComputeSpec = parsed.spec;
        let t = Instant::now();
        let problems = validate(&spec, &ctx);
        check.push(us(t.elapsed()));
        anyhow::ensure!(problems.is_empty(), "invalid bench spec: {problems:?}");
        let t = Instant::now();
        let conf = compute_ctl::pg::render_postgresql_conf_as(&spec, &conn, "stages");
        let hba = compute_ctl::pg::render_pg_hba(SUPERUSER)?;
        render.push(us(t.elapsed()));
        std::hint::black_box((conf, hba));
        let t = Instant::now();
        compute_ctl::pg::write_config(&env, &params, &spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        write.push(us(t.elapsed()));
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        signal.push(us(t.elapsed()));
        let t = Instant::now();
        let refused = compute_ctl::pg::refused_settings(&env, &params_live, &held, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        file_check.push(us(t.elapsed()));
        anyhow::ensure!(refused.is_empty(), "Postgres refused: {refused:?}");
        let t = Instant::now();
        held.simple_query(
            &env,
            &params_live.conn,
            "SELECT 1",
            ONE_SECOND * 10,
            ONE_SECOND * 10,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        round_trip.push(us(t.elapsed()));
        let t = Instant::now();
        let body = serde_json::to_vec(&StatusBody::from_state(&c.compute.state()))?;
        answer.push(us(t.elapsed()));
        std::hint::black_box(body);
    }
    let timeline = json!({
        "client_to_router_us": med(&tl.to_router),
        "router_to_accepted_us": med(&tl.to_accepted),
        "supervisor_wakeup_us": med(&tl.wake),
        "apply_us": med(&tl.apply),
        "applied_to_client_us": med(&tl.answer),
        "total_us": med(&tl.total),
    });
    let alone = json!({
        "tcp_connect_us": med(&connect),
        "extract_and_parse_us": med(&extract),
        "validate_us": med(&check),
        "render_us": med(&render),
        "write_config_us": med(&write),
        "sighup_us": med(&signal),
        "check_after_sighup_us": med(&file_check),
        "held_session_round_trip_us": med(&round_trip),
        "answer_serialise_us": med(&answer),
    });
    let mut r = CaseResult::new(
        "notify_stages",
        format!("{roles} roles, loopback HTTP in process"),
        Summary::of(&tl.total.iter().map(|u| u / 1000.0).collect::<Vec<_>>()),
        None,
    )
    .with_extra(json!({"roles": roles, "timeline": timeline, "alone": alone}));
    r.target = "report: µs per stage";
    Ok(r)
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let r = client
        .post(format!("{url}/configure"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let code = r.status();
    let text = r.bytes().await?;
    if code != 200 {
        bail!(
            "POST /configure answered {code}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}
