//! The suites: each measures compute_ctl and its floor side by side.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::compute::{Compute, SUPERUSER};
use crate::postgres::{self, ByHand};
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

/// One catalog size of the notify suite: its own compute_ctl (and
/// Postgres, with the catalog applied) and the samples of each measurement.
struct NotifySize {
    roles: usize,
    c: Compute,
    /// The spec the compute was started with; every notify is made from it.
    base: serde_json::Value,
    body_kb: f64,
    /// The pre-fix catalog pass as a psql script, at sizes that run it.
    prefix_script: Option<std::path::PathBuf>,
    prefix_reps: usize,
    ours: Vec<f64>,
    floor: Vec<f64>,
    floor_nosync: Vec<f64>,
    prefix: Vec<f64>,
}

impl NotifySize {
    async fn start(plan: Plan, roles: usize) -> anyhow::Result<Self> {
        let base = specs::sized(roles, plan.dbs, 0, &format!("notify-base-{roles}"));
        let c = running(&base)
            .await
            .with_context(|| format!("starting compute_ctl with {roles} roles"))?;
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
            base,
            body_kb,
            prefix_script,
            prefix_reps: plan.prefix_reps,
            ours: Vec::new(),
            floor: Vec::new(),
            floor_nosync: Vec::new(),
            prefix: Vec::new(),
        })
    }

    /// One repetition: our notify, the by-hand reload (durable and not),
    /// and the pre-fix pass (by-hand reload + psql catalog pass).
    async fn rep(&mut self, i: usize) -> anyhow::Result<()> {
        let c = &self.c;
        let roles = self.roles;
        let value = format!("{}kB", 4096 + 5 * i + 1);
        let spec = specs::notify(&self.base, &format!("notify-{roles}-{i}"), &value);
        let request = Compute::configure_body(&spec)?;
        let t = Instant::now();
        let (code, body) = c.configure_raw(request).await?;
        if code != 200 {
            bail!("notify answered {code}: {body}");
        }
        postgres::wait_visible(c.pg_port, SUPERUSER, "work_mem", &value, VISIBLE_LIMIT).await?;
        self.ours.push(ms(t.elapsed()));

        for (durable, k) in [(true, 2), (false, 3)] {
            let value = format!("{}kB", 4096 + 5 * i + k);
            let t = Instant::now();
            postgres::set_and_reload(&c.pgdata, "work_mem", &value, durable)?;
            postgres::wait_visible(c.pg_port, SUPERUSER, "work_mem", &value, VISIBLE_LIMIT).await?;
            let samples = if durable {
                &mut self.floor
            } else {
                &mut self.floor_nosync
            };
            samples.push(ms(t.elapsed()));
        }
        if let Some(script) = self.prefix_script.as_ref().filter(|_| i < self.prefix_reps) {
            let value = format!("{}kB", 4096 + 5 * i + 4);
            let t = Instant::now();
            postgres::set_and_reload(&c.pgdata, "work_mem", &value, true)?;
            postgres::wait_visible(c.pg_port, SUPERUSER, "work_mem", &value, VISIBLE_LIMIT).await?;
            prefix::run(c.pg_port, SUPERUSER, script)?;
            self.prefix.push(ms(t.elapsed()));
        }
        Ok(())
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
    let mut summaries = Vec::new();
    for s in &sizes {
        let m = s.c.get("/metrics.json").await?;
        if m["last_reconfigure"]["catalog_statements"].as_u64() != Some(0) {
            bail!("a notify ran catalog statements: {m}");
        }
        let (ours, floor, nosync) = (
            Summary::of(&s.ours),
            Summary::of(&s.floor),
            Summary::of(&s.floor_nosync),
        );
        summaries.push((s.roles, ours));
        let case = format!("{} roles, {} dbs", s.roles, plan.dbs);
        let extra = json!({
            "roles": s.roles,
            "body_kb": s.body_kb,
            "floor_without_fsync_ms": nosync.median_ms,
            "ratio_without_fsync": ours.median_ms / nosync.median_ms,
        });
        let row = CaseResult::new("notify_reconfigure", case.clone(), ours, Some(floor));
        rows.push(if s.roles <= plan.big_roles {
            row.ratio_target("<= 1.3x floor", 1.3).with_extra(extra)
        } else {
            let mut r = row.with_extra(extra);
            r.target = "report (Neon's 2 MB body)";
            r
        });
        if !s.prefix.is_empty() {
            let prefix = Summary::of(&s.prefix);
            let mut r = CaseResult::new("prefix_headline", case, ours, Some(prefix)).with_extra(
                json!({"roles": s.roles, "speedup": prefix.median_ms / ours.median_ms}),
            );
            r.target = "report: speed-up over pre-fix";
            rows.push(r);
        }
    }
    let small = summaries.first().map(|(_, s)| *s);
    let big = summaries
        .iter()
        .find(|(r, _)| *r == plan.big_roles)
        .map(|(_, s)| *s);
    if let (Some(small), Some(big)) = (small, big) {
        rows.push(
            CaseResult::new(
                "notify_reconfigure",
                format!("{} over {} roles", plan.big_roles, plan.notify_roles[0]),
                big,
                Some(small),
            )
            .ratio_target("<= 1.10 (size ratio)", 1.10),
        );
    }
    Ok(rows)
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
