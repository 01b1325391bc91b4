//! The suites: each measures compute_ctl and its floor side by side.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::compute::{Compute, SUPERUSER};
use crate::neighbour::Neighbour;
use crate::postgres::{self, ByHand, ReloadSplit, Watcher, Write};
use crate::prefix;
use crate::specs;
use crate::stats::{CaseResult, Summary, percentile};

/// Sizes and repetitions; `smoke` keeps the harness honest in `just test`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub reps: usize,
    /// Repetitions of the notify suite (its ratios are the headline).
    pub notify_reps: usize,
    /// Of those, how many also run the pre-fix catalog pass (seconds each
    /// at 5,000 roles; its speed-up is reported, not a tight ratio).
    pub prefix_reps: usize,
    /// Catalog sizes of the notify suite; the first is the small one.
    pub notify_roles: &'static [usize],
    /// The size the notify targets are stated at (and of the memory suite).
    pub big_roles: usize,
    /// The pre-fix catalog pass runs at the notify sizes up to this one.
    pub prefix_max_roles: usize,
    /// Catalog sizes of the request-path suite.
    pub path_roles: &'static [usize],
    pub noop_roles: usize,
    pub dbs: usize,
    pub status_rate_per_s: u32,
    /// Notifies of the memory suite.
    pub mem_notifies: usize,
    /// Pairs (ours, floor) measured under the noisy neighbour.
    pub neighbour_reps: usize,
    /// The neighbour's write-and-fsync chunk.
    pub neighbour_chunk_mib: usize,
    /// The neighbour stops by itself after this long, whatever happens.
    pub neighbour_secs: u64,
    /// Pairs (ours, by hand) of the durable start.
    pub durable_starts: usize,
    /// Rounds of the commit load (each: ours, by hand, local commit).
    pub durable_load_rounds: usize,
    /// Transactions of one load run (split among its clients) ...
    pub durable_load_tx: usize,
    /// ... or this long, whichever comes first.
    pub durable_load_secs: f64,
    /// Safekeeper moves under a writer.
    pub durable_moves: usize,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            reps: 7,
            // A notify at 5,000 roles differs from one at 10 by well under
            // a millisecond: 21 interleaved rounds keep the medians' noise
            // below that on a shared 2-core machine.
            notify_reps: 21,
            prefix_reps: 7,
            notify_roles: &[10, 1_000, 5_000, 20_000],
            big_roles: 5_000,
            prefix_max_roles: 5_000,
            path_roles: &[10, 1_000, 5_000, 20_000],
            noop_roles: 1_000,
            dbs: 100,
            status_rate_per_s: 500,
            mem_notifies: 10_000,
            neighbour_reps: 61,
            neighbour_chunk_mib: 8,
            neighbour_secs: 300,
            durable_starts: 11,
            durable_load_rounds: 96,
            durable_load_tx: 1_000,
            durable_load_secs: 1.0,
            durable_moves: 6,
        }
    }

    pub fn smoke() -> Self {
        Self {
            reps: 1,
            notify_reps: 1,
            prefix_reps: 1,
            notify_roles: &[3, 30],
            big_roles: 30,
            prefix_max_roles: 30,
            path_roles: &[3, 30],
            noop_roles: 20,
            dbs: 2,
            status_rate_per_s: 50,
            mem_notifies: 20,
            // The harness only: small chunks, so that `just test` stays calm.
            neighbour_reps: 2,
            neighbour_chunk_mib: 1,
            neighbour_secs: 30,
            durable_starts: 1,
            durable_load_rounds: 1,
            durable_load_tx: 40,
            durable_load_secs: 1.0,
            durable_moves: 1,
        }
    }
}

/// A Postgres port and an HTTP port.
pub fn ports() -> (u16, u16) {
    (crate::ports::free_port(), crate::ports::free_port())
}

const START_LIMIT: Duration = Duration::from_secs(600);
const VISIBLE_LIMIT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn running(spec: &serde_json::Value) -> anyhow::Result<Compute> {
    let (pg, http) = ports();
    let mut c = Compute::spawn(spec, pg, http)?;
    c.wait_running(START_LIMIT).await?;
    Ok(c)
}

/// How a measurement sees the new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// In a session held open (the floor's and ours' headline): a pooled
    /// client of the compute.
    Persistent,
    /// In a fresh session per poll (fork + authentication each): an extra
    /// column, the floor of earlier runs.
    Fresh,
}

/// The samples (ms) of one way of measuring, ours and the by-hand floor.
#[derive(Default)]
struct Paired {
    ours: Vec<f64>,
    floor: Vec<f64>,
}

/// Where the time of ours and of the floor went (persistent session), ms.
#[derive(Default)]
struct Split {
    /// POST sent → 200 received.
    ours_answer: Vec<f64>,
    /// 200 received → the session sees the value.
    ours_after_answer: Vec<f64>,
    /// The floor's file write (read, edit, temp file, rename).
    floor_write: Vec<f64>,
    /// The floor's kill(SIGHUP).
    floor_signal: Vec<f64>,
    /// SIGHUP sent → the session sees the value.
    floor_after_signal: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).median_ms
}

/// One catalog size of the notify suite: its own compute_ctl (and
/// Postgres, with the catalog applied), a session held open on it, and the
/// samples of each measurement.
struct NotifySize {
    roles: usize,
    c: Compute,
    watcher: Watcher,
    /// The spec the compute was started with; every notify is made from it.
    base: serde_json::Value,
    body_kb: f64,
    /// The pre-fix catalog pass as a psql script, at sizes that run it.
    prefix_script: Option<std::path::PathBuf>,
    prefix_reps: usize,
    /// Makes every value of `work_mem` new.
    counter: usize,
    persistent: Paired,
    fresh: Paired,
    split: Split,
    /// By-hand reload with the old durable write (persistent session).
    durable: Vec<f64>,
    prefix: Vec<f64>,
}

impl NotifySize {
    async fn start(plan: Plan, roles: usize) -> anyhow::Result<Self> {
        let base = specs::sized(roles, plan.dbs, 0, &format!("notify-base-{roles}"));
        let c = running(&base)
            .await
            .with_context(|| format!("starting compute_ctl with {roles} roles"))?;
        let watcher = Watcher::connect(c.pg_port, SUPERUSER).await?;
        let body_kb =
            Compute::configure_body(&specs::notify(&base, "size", "4MB"))?.len() as f64 / 1024.0;
        let prefix_script = if roles <= plan.prefix_max_roles {
            let path = c.pgdata.with_file_name("prefix.sql");
            std::fs::write(&path, prefix::script(roles, plan.dbs))?;
            Some(path)
        } else {
            None
        };
        Ok(Self {
            roles,
            c,
            watcher,
            base,
            body_kb,
            prefix_script,
            prefix_reps: plan.prefix_reps,
            counter: 0,
            persistent: Paired::default(),
            fresh: Paired::default(),
            split: Split::default(),
            durable: Vec::new(),
            prefix: Vec::new(),
        })
    }

    /// A `work_mem` value this compute has not had yet.
    fn next_value(&mut self) -> String {
        self.counter += 1;
        format!("{}kB", 4096 + self.counter)
    }

    async fn visible(&self, value: &str, seen: Seen) -> anyhow::Result<()> {
        match seen {
            Seen::Persistent => {
                self.watcher
                    .wait_visible("work_mem", value, VISIBLE_LIMIT)
                    .await
            }
            Seen::Fresh => {
                postgres::wait_visible_fresh(
                    self.c.pg_port,
                    SUPERUSER,
                    "work_mem",
                    value,
                    VISIBLE_LIMIT,
                )
                .await
            }
        }
    }

    /// Our notify: POST /configure (body made before the clock starts),
    /// its 200, then the value seen. Returns (total, answered) in ms.
    async fn ours(&mut self, seen: Seen) -> anyhow::Result<(f64, f64)> {
        let value = self.next_value();
        let op = format!("notify-{}-{}", self.roles, self.counter);
        let request = Compute::configure_body(&specs::notify(&self.base, &op, &value))?;
        let t = Instant::now();
        let (code, body) = self.c.configure_raw(request).await?;
        let answered = ms(t.elapsed());
        if code != 200 {
            bail!("notify answered {code}: {body}");
        }
        self.visible(&value, seen).await?;
        Ok((ms(t.elapsed()), answered))
    }

    /// The by-hand reload: write the file, rename, SIGHUP, the value seen.
    async fn by_hand(&mut self, how: Write, seen: Seen) -> anyhow::Result<(f64, ReloadSplit)> {
        let value = self.next_value();
        let t = Instant::now();
        let split = postgres::set_and_reload(&self.c.pgdata, "work_mem", &value, how)?;
        self.visible(&value, seen).await?;
        Ok((ms(t.elapsed()), split))
    }

    /// One pair, ours and the floor, in the order `ours_first` says.
    async fn pair(&mut self, seen: Seen, ours_first: bool) -> anyhow::Result<()> {
        for ours_turn in [ours_first, !ours_first] {
            if ours_turn {
                let (total, answered) = self.ours(seen).await?;
                if seen == Seen::Persistent {
                    self.split.ours_answer.push(answered);
                    self.split.ours_after_answer.push(total - answered);
                    self.persistent.ours.push(total);
                } else {
                    self.fresh.ours.push(total);
                }
            } else {
                let (total, split) = self.by_hand(Write::Atomic, seen).await?;
                if seen == Seen::Persistent {
                    self.split.floor_write.push(split.write_ms);
                    self.split.floor_signal.push(split.signal_ms);
                    self.split
                        .floor_after_signal
                        .push(total - split.write_ms - split.signal_ms);
                    self.persistent.floor.push(total);
                } else {
                    self.fresh.floor.push(total);
                }
            }
        }
        Ok(())
    }

    /// One repetition: ours and the floor alternating (who goes first
    /// changes every repetition), with a session held open and with fresh
    /// sessions; the durable by-hand reload; the pre-fix pass.
    async fn rep(&mut self, i: usize) -> anyhow::Result<()> {
        let ours_first = i % 2 == 0;
        self.pair(Seen::Persistent, ours_first).await?;
        self.pair(Seen::Fresh, !ours_first).await?;
        let (durable, _) = self.by_hand(Write::Durable, Seen::Persistent).await?;
        self.durable.push(durable);
        if let Some(script) = self.prefix_script.clone().filter(|_| i < self.prefix_reps) {
            let value = self.next_value();
            let t = Instant::now();
            postgres::set_and_reload(&self.c.pgdata, "work_mem", &value, Write::Atomic)?;
            self.visible(&value, Seen::Persistent).await?;
            prefix::run(self.c.pg_port, SUPERUSER, &script)?;
            self.prefix.push(ms(t.elapsed()));
        }
        Ok(())
    }

    /// The row of this size, with the extra columns.
    fn row(&self, plan: Plan) -> CaseResult {
        let (ours, floor) = (
            Summary::of(&self.persistent.ours),
            Summary::of(&self.persistent.floor),
        );
        let (fresh_ours, fresh_floor) = (median(&self.fresh.ours), median(&self.fresh.floor));
        let durable = median(&self.durable);
        let sp = &self.split;
        let extra = json!({
            "roles": self.roles,
            "body_kb": self.body_kb,
            "fresh_session": {
                "ours_ms": fresh_ours,
                "floor_ms": fresh_floor,
                "ratio": fresh_ours / fresh_floor,
            },
            "durable_floor_ms": durable,
            "stages_ms": {
                "ours_answer": median(&sp.ours_answer),
                "ours_answer_to_visible": median(&sp.ours_after_answer),
                "floor_write": median(&sp.floor_write),
                "floor_signal": median(&sp.floor_signal),
                "floor_signal_to_visible": median(&sp.floor_after_signal),
            },
            "p90_ratio": ours.p90_ms / floor.p90_ms,
        });
        let case = format!("{} roles, {} dbs", self.roles, plan.dbs);
        let row = CaseResult::new("notify_reconfigure", case, ours, Some(floor));
        if self.roles <= plan.big_roles {
            row.ratio_target("<= 1.3x floor", 1.3).with_extra(extra)
        } else {
            let mut r = row.with_extra(extra);
            r.target = "report (Neon's 2 MB body)";
            r
        }
    }
}

pub async fn notify_reconfigure(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let mut sizes = Vec::new();
    for &roles in plan.notify_roles {
        sizes.push(NotifySize::start(plan, roles).await?);
    }
    // Sizes interleaved in every repetition, so that a change of machine
    // load during the run hits every size alike.
    for i in 0..plan.notify_reps {
        for s in sizes.iter_mut() {
            s.rep(i)
                .await
                .with_context(|| format!("notify at {} roles", s.roles))?;
        }
    }
    let mut rows = Vec::new();
    for s in &sizes {
        let m = s.c.get("/metrics.json").await?;
        if m["last_reconfigure"]["catalog_statements"].as_u64() != Some(0) {
            bail!("a notify ran catalog statements: {m}");
        }
        rows.push(s.row(plan));
        if !s.prefix.is_empty() {
            let ours = Summary::of(&s.persistent.ours);
            let prefix = Summary::of(&s.prefix);
            let case = format!("{} roles, {} dbs", s.roles, plan.dbs);
            let mut r = CaseResult::new("prefix_headline", case, ours, Some(prefix)).with_extra(
                json!({"roles": s.roles, "speedup": prefix.median_ms / ours.median_ms}),
            );
            r.target = "report: speed-up over pre-fix";
            rows.push(r);
        }
    }
    let small = &sizes[0];
    if let Some(big) = sizes.iter().find(|s| s.roles == plan.big_roles) {
        rows.push(
            CaseResult::new(
                "notify_reconfigure",
                format!("{} over {} roles", plan.big_roles, small.roles),
                Summary::of(&big.persistent.ours),
                Some(Summary::of(&small.persistent.ours)),
            )
            .ratio_target("<= 1.10 (size ratio)", 1.10)
            .with_extra(json!({
                // The same quotient of the floors: what noise alone gives.
                "floor_size_ratio": median(&big.persistent.floor) / median(&small.persistent.floor),
            })),
        );
    }
    let small = &mut sizes[0];
    rows.push(
        under_neighbour(plan, small)
            .await
            .context("notify under a noisy neighbour")?,
    );
    Ok(rows)
}

/// Ours and the floor at the smallest size while a neighbour process
/// writes and fsyncs `plan.neighbour_chunk_mib` chunks on the file system
/// of PGDATA: median and p90 each against the floor under the same
/// neighbour.
async fn under_neighbour(plan: Plan, s: &mut NotifySize) -> anyhow::Result<CaseResult> {
    let dir = s.c.pgdata.parent().context("PGDATA has no parent")?;
    let neighbour = Neighbour::start(dir, plan.neighbour_chunk_mib, plan.neighbour_secs)?;
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for i in 0..plan.neighbour_reps {
        for ours_turn in [i % 2 == 0, i % 2 == 1] {
            if ours_turn {
                ours.push(s.ours(Seen::Persistent).await?.0);
            } else {
                floor.push(s.by_hand(Write::Atomic, Seen::Persistent).await?.0);
            }
        }
    }
    let durable_sample = s.by_hand(Write::Durable, Seen::Persistent).await?.0;
    let chunks = neighbour.stop()?;
    anyhow::ensure!(
        chunks > 0,
        "the neighbour fsynced no chunk while the case ran"
    );
    let (o, f) = (Summary::of(&ours), Summary::of(&floor));
    let (median_ratio, p90_ratio) = (o.median_ms / f.median_ms, o.p90_ms / f.p90_ms);
    let mut r = CaseResult::new(
        "notify_neighbour",
        format!(
            "{} roles, {} MiB fsync neighbour",
            s.roles, plan.neighbour_chunk_mib
        ),
        o,
        Some(f),
    )
    .with_extra(json!({
        "roles": s.roles,
        "p90_ms": {"ours": o.p90_ms, "floor": f.p90_ms},
        "p90_ratio": p90_ratio,
        "neighbour_chunks_fsynced": chunks,
        "neighbour_chunk_mib": plan.neighbour_chunk_mib,
        "one_durable_floor_ms": durable_sample,
    }));
    r.target = "median, p90 <= 1.3x";
    r.met = Some(median_ratio <= 1.3 && p90_ratio <= 1.3);
    Ok(r)
}

/// A full reconfigure whose catalog already matches: ours vs one snapshot round trip.
pub async fn full_reconfigure_noop(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let base = specs::sized(plan.noop_roles, plan.dbs, 0, "noop-base");
    let c = running(&base).await?;
    let (mut ours, mut floor, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.reps {
        let mut spec = base.clone();
        spec["operation_uuid"] = json!(format!("noop-{i}"));
        let request = Compute::configure_body(&spec)?;
        let t = Instant::now();
        let (code, body) = c.configure_raw(request).await?;
        if code != 200 {
            bail!("noop reconfigure answered {code}: {body}");
        }
        ours.push(ms(t.elapsed()));
        let m = c.get("/metrics.json").await?;
        writes.push(
            m["last_reconfigure"]["catalog_statements"]
                .as_u64()
                .unwrap_or(u64::MAX),
        );

        let t = Instant::now();
        let s = postgres::session(c.pg_port, SUPERUSER, "postgres").await?;
        s.simple_query(compute_ctl::catalog::SNAPSHOT_SQL).await?;
        floor.push(ms(t.elapsed()));
    }
    let all_zero = writes.iter().all(|w| *w == 0);
    Ok(vec![
        CaseResult::new(
            "full_reconfigure_noop",
            format!("{} roles, {} dbs", plan.noop_roles, plan.dbs),
            Summary::of(&ours),
            Some(Summary::of(&floor)),
        )
        .ratio_target("<= 3x floor, 0 writes", 3.0)
        .with_extra(json!({"statements_executed": writes, "zero_writes": all_zero})),
    ])
}

/// First apply of a catalog to an empty cluster: ours (startup config phase)
/// vs psql running the same DDL as one script.
pub async fn first_apply(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let spec = specs::sized(plan.noop_roles, plan.dbs, 0, "first-apply");
    let parsed: compute_ctl::spec::ComputeSpec = serde_json::from_value(spec.clone())?;
    let (mut ours, mut floor, mut statements) = (Vec::new(), Vec::new(), 0);
    for _ in 0..plan.reps {
        let c = running(&spec).await?;
        let m = c.get("/metrics.json").await?;
        ours.push(
            m["config_ms"]
                .as_f64()
                .context("config_ms missing from /metrics.json")?,
        );
        drop(c);

        let (pg, _) = ports();
        let (mut by_hand, _) = ByHand::initdb(pg, SUPERUSER)?;
        by_hand.configure(FLOOR_SETTINGS)?;
        by_hand.start()?;
        let (script, n) = same_ddl(pg, &parsed).await?;
        statements = n;
        let path = by_hand.pgdata.with_file_name("ddl.sql");
        std::fs::write(&path, &script)?;
        let mut psql = postgres::tool("psql");
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-f",
        ])
        .arg(&path);
        let t = Instant::now();
        postgres::run(psql)?;
        floor.push(ms(t.elapsed()));
    }
    Ok(vec![
        CaseResult::new(
            "first_apply",
            format!("{} roles, {} dbs", plan.noop_roles, plan.dbs),
            Summary::of(&ours),
            Some(Summary::of(&floor)),
        )
        .ratio_target("<= 1.3x floor", 1.3)
        .with_extra(json!({"statements": statements})),
    ])
}

/// Settings the floors run with: those of the specs in `specs::sized`.
const FLOOR_SETTINGS: &str =
    "max_connections = 200\nshared_buffers = 128MB\nfsync = off\nwork_mem = '4MB'\n";

/// The very DDL compute_ctl plans for `spec` on a fresh cluster, as a psql script.
async fn same_ddl(
    port: u16,
    spec: &compute_ctl::spec::ComputeSpec,
) -> anyhow::Result<(String, usize)> {
    let s = postgres::session(port, SUPERUSER, "postgres").await?;
    let rows = s.simple_query(compute_ctl::catalog::SNAPSHOT_SQL).await?;
    let json = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .context("snapshot returned no row")?;
    let snapshot = compute_ctl::catalog::snapshot::parse_snapshot(&json)?;
    let ops = compute_ctl::catalog::plan(&snapshot, spec, "postgres")?;
    let mut script = String::new();
    for op in &ops {
        script.push_str(&compute_ctl::catalog::render(op));
        script.push_str(";\n");
    }
    Ok((script, ops.len()))
}

/// Spec file to Running (initdb path) vs initdb + pg_ctl start -w by hand.
pub async fn cold_start(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let spec = specs::sized(0, 0, 0, "cold");
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps.max(5) {
        let (pg, http) = ports();
        let t = Instant::now();
        let mut c = Compute::spawn(&spec, pg, http)?;
        c.wait_running(START_LIMIT).await?;
        ours.push(ms(t.elapsed()));
        drop(c);

        let (pg, _) = ports();
        let t = Instant::now();
        let (mut by_hand, _) = ByHand::initdb(pg, SUPERUSER)?;
        by_hand.configure(FLOOR_SETTINGS)?;
        by_hand.start()?;
        floor.push(ms(t.elapsed()));
    }
    Ok(vec![
        CaseResult::new(
            "cold_start",
            "empty catalog",
            Summary::of(&ours),
            Some(Summary::of(&floor)),
        )
        .ratio_target("<= 1.15x floor", 1.15),
    ])
}

/// GET /status latency at a fixed rate while a full reconfigure runs.
pub async fn status_under_load(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let base = specs::sized(plan.noop_roles, 1, 0, "status-base");
    let c = std::sync::Arc::new(running(&base).await?);
    let client = reqwest::Client::new();
    let url = format!("{}/status", c.http);
    let period = Duration::from_secs_f64(1.0 / f64::from(plan.status_rate_per_s));
    let mut lat = Vec::new();
    // Several full reconfigures back to back, each changing every password,
    // so that enough requests land while one runs.
    for round in 0..plan.reps.max(3) {
        let pw_gen = u32::try_from(round).unwrap_or(0) + 1;
        let mut changed = specs::sized(plan.noop_roles, 1, pw_gen, "status-change");
        changed["operation_uuid"] = json!(format!("status-change-{round}"));
        let configure = {
            let c = c.clone();
            tokio::spawn(async move { c.configure(&changed).await })
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !configure.is_finished() {
            tick.tick().await;
            let t = Instant::now();
            let st: serde_json::Value = client.get(&url).send().await?.json().await?;
            lat.push(ms(t.elapsed()));
            anyhow::ensure!(st["status"].is_string(), "unexpected /status body: {st}");
        }
        let (code, body) = configure.await??;
        if code != 200 {
            bail!("reconfigure under load answered {code}: {body}");
        }
    }
    let p99 = percentile(&lat, 99.0);
    let mut r = CaseResult::new("status_under_load", format!("{} roles changing", plan.noop_roles), Summary::of(&lat), None)
        .with_extra(json!({"p50_ms": percentile(&lat, 50.0), "p99_ms": p99, "requests": lat.len(), "rate_per_s": plan.status_rate_per_s}));
    r.target = "p99 <= 5 ms";
    r.met = Some(p99 <= 5.0);
    Ok(vec![r])
}
