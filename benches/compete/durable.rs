//! The durable-primary rows (issue 21), each against its by-hand floor in
//! the same run (`durable_floor.rs`):
//!
//! - `durable_start`: spawn to `running` of a primary with three
//!   safekeepers (sync, base backup, catch-up, promote, announce, quorum)
//!   against the by-hand sequence, alternating for `durable_starts` pairs;
//! - `durable_commit`: commit latency (p50, p99) and TPS of a 1-client and
//!   an 8-client insert load (one row per transaction) on that compute
//!   (`ANY 2` of 3) against a Postgres started with `pg_ctl` with the same
//!   quorum of three standbys set by hand, alternating; the local-commit
//!   figure (`SET synchronous_commit = local`) on ours for information,
//!   after the paired rounds (a quarter as many); an A/A twin of the floor
//!   and, for information, a by-hand primary made as ours is (a promoted
//!   base backup of its own safekeepers) in the same rotation;
//! - `durable_move`: a safekeeper-move notify (`abc` → `abd` and back)
//!   under a writer, from its answer until a majority of the new set
//!   streams in quorum state past the LSN at the answer (≤ 1 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cases::{Plan, ports};
use crate::compute::{Compute, SUPERUSER};
use crate::durable_floor::{
    self as floor, Cluster, POLL, any_2_of, connstr, in_quorum, sk_name, value, wait_quorum,
};
use crate::postgres::{self, session};
use crate::stats::{CaseResult, Summary, percentile};

const LIMIT: Duration = Duration::from_secs(120);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).median_ms
}

/// Three safekeepers: standbys of a bootstrap cluster (with the load's
/// table), the bootstrap then stopped, as `tests/it/support/safekeepers.rs`.
struct Safekeepers {
    members: Vec<Cluster>,
    _bootstrap: Cluster,
}

impl Safekeepers {
    async fn start() -> anyhow::Result<Self> {
        let (boot_port, _) = ports();
        let mut bootstrap = Cluster::primary(boot_port).context("bootstrap cluster")?;
        let c = session(boot_port, SUPERUSER, "postgres").await?;
        c.batch_execute("CREATE TABLE commit_load (id bigint); CHECKPOINT")
            .await?;
        let end = value(&c, "SELECT pg_current_wal_flush_lsn()").await?;
        drop(c);
        let mut members = Vec::new();
        for _ in 0..3 {
            let port = crate::ports::free_port();
            members.push(
                Cluster::standby_of(boot_port, port, &sk_name(port)).context("a safekeeper")?,
            );
        }
        for sk in &members {
            let c = session(sk.port, SUPERUSER, "postgres").await?;
            let deadline = Instant::now() + LIMIT;
            while value(&c, &format!("SELECT pg_last_wal_replay_lsn() >= '{end}'")).await? != "t" {
                if Instant::now() > deadline {
                    bail!(
                        "safekeeper {} did not replay the bootstrap cluster",
                        sk.port
                    );
                }
                tokio::time::sleep(POLL).await;
            }
        }
        bootstrap.stop("fast")?;
        Ok(Self {
            members,
            _bootstrap: bootstrap,
        })
    }

    fn ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.port).collect()
    }
}

/// The primary's spec: no catalog (the by-hand side has none), the first
/// safekeeper as the base backup source, generation 1.
fn spec(sk_ports: &[u16], op: &str) -> Value {
    let mut s = crate::specs::sized(0, 0, 0, op);
    s["pageserver_connstring"] = json!(connstr(sk_ports[0]));
    s["safekeeper_connstrings"] = json!(
        sk_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
    );
    s["safekeepers_generation"] = json!(1);
    s
}

/// Spawns compute_ctl and polls `/status` (every [`POLL`], as the floor
/// polls) until `running`; returns it with the time from the spawn.
async fn start_ours(spec: &Value) -> anyhow::Result<(Compute, f64)> {
    let (pg, http) = ports();
    let t = Instant::now();
    let c = Compute::spawn(spec, pg, http)?;
    let deadline = t + LIMIT;
    loop {
        if let Ok(st) = c.get("/status").await {
            match st["status"].as_str() {
                Some("running") => break,
                Some("failed") => bail!("compute failed: {}", st["error"]),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("compute not running after {LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok((c, ms(t.elapsed())))
}

/// The `*_ms` numbers of `/metrics.json` (the start's phases).
async fn phases(c: &Compute) -> anyhow::Result<Value> {
    let m = c.get("/metrics.json").await?;
    let mut out = serde_json::Map::new();
    if let Some(obj) = m.as_object() {
        for (k, v) in obj {
            if k.ends_with("_ms") && v.is_number() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// Start to `running`, ours and by hand alternating; leaves the safekeepers
/// following a compute of ours, which it returns.
async fn starts(plan: Plan, sks: &Safekeepers) -> anyhow::Result<(CaseResult, Compute)> {
    let sk_ports = sks.ports();
    let (mut ours, mut by_hand) = (Vec::new(), Vec::new());
    let mut steps: Vec<[f64; 7]> = Vec::new();
    let mut our_phases = Vec::new();
    for i in 0..plan.durable_starts {
        for ours_turn in [i % 2 == 0, i % 2 == 1] {
            if ours_turn {
                let (c, took) = start_ours(&spec(&sk_ports, &format!("start-{i}")))
                    .await
                    .with_context(|| format!("compute_ctl start {i}"))?;
                ours.push(took);
                our_phases.push(phases(&c).await?);
                drop(c); // SIGTERM: a fast shutdown, the WAL senders waited for
            } else {
                let port = crate::ports::free_port();
                let (mut pg, s) = floor::start_by_hand(&sk_ports, port, LIMIT)
                    .await
                    .with_context(|| format!("by-hand start {i}"))?;
                by_hand.push(s.iter().sum());
                steps.push(s);
                pg.stop("fast")?;
            }
        }
    }
    let step_names = [
        "sync",
        "basebackup",
        "start",
        "catch_up",
        "promote",
        "announce",
        "quorum",
    ];
    let mut floor_steps = serde_json::Map::new();
    for (k, name) in step_names.iter().enumerate() {
        let v: Vec<f64> = steps.iter().map(|s| s[k]).collect();
        floor_steps.insert(format!("{name}_ms"), json!(median(&v)));
    }
    // Each of ours' phases over all its starts, so that a start row that
    // misses can be set phase by phase against the floor's steps.
    let mut our_medians = serde_json::Map::new();
    if let Some(Value::Object(first)) = our_phases.first() {
        for name in first.keys() {
            let v: Vec<f64> = our_phases.iter().filter_map(|p| p[name].as_f64()).collect();
            our_medians.insert(name.clone(), json!(median(&v)));
        }
    }
    // Ours over the floor within each pair (the two sides of a pair ran
    // next to each other): the start times drift within a run (both sides
    // grew from about 400 to 800 ms in one run of 5 December), and the two
    // medians can then fall on either side of a step.
    let paired: Vec<f64> = ours.iter().zip(&by_hand).map(|(o, b)| o / b).collect();
    let row = CaseResult::new(
        "durable_start",
        "spawn -> running, 3 safekeepers",
        Summary::of(&ours),
        Some(Summary::of(&by_hand)),
    )
    .ratio_target("<= 1.2x by hand", 1.2)
    .with_extra(json!({
        "pairs": plan.durable_starts,
        "ours_ms": ours,
        "by_hand_ms": by_hand,
        "paired_ratio_median": median(&paired),
        "by_hand_steps_median": floor_steps,
        "ours_phases_median": our_medians,
        "ours_phases_last": our_phases.last(),
    }));
    let (c, _) = start_ours(&spec(&sk_ports, "main")).await?;
    Ok((row, c))
}

/// One run of the insert load: `clients` sessions, one row per
/// transaction, each until `max_tx` commits or `secs` have passed.
struct Load {
    latencies: Vec<f64>,
    tx: usize,
    secs: f64,
}

async fn load(
    port: u16,
    clients: usize,
    max_tx: usize,
    secs: f64,
    local: bool,
) -> anyhow::Result<Load> {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        let c = session(port, SUPERUSER, "postgres").await?;
        if local {
            c.batch_execute("SET synchronous_commit = local").await?;
        }
        let stmt = c.prepare("INSERT INTO commit_load VALUES ($1)").await?;
        sessions.push((c, stmt));
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = Instant::now();
    let deadline = t + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for (c, stmt) in sessions {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(max_tx);
            while lat.len() < max_tx && Instant::now() < deadline {
                let id = NEXT.fetch_add(1, Ordering::Relaxed) as i64;
                let s = Instant::now();
                c.execute(&stmt, &[&id]).await?;
                lat.push(ms(s.elapsed()));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Load {
        tx: latencies.len(),
        latencies,
        secs,
    })
}

#[derive(Default)]
struct Arm {
    latencies: Vec<f64>,
    tx: usize,
    secs: f64,
    /// Each run's p50, p99 (ms) and TPS, in order: how much the rounds differ.
    runs: Vec<[f64; 3]>,
}

impl Arm {
    fn add(&mut self, l: Load) {
        self.runs.push([
            median(&l.latencies),
            percentile(&l.latencies, 99.0),
            l.tx as f64 / l.secs,
        ]);
        self.latencies.extend(l.latencies);
        self.tx += l.tx;
        self.secs += l.secs;
    }

    fn tps(&self) -> f64 {
        self.tx as f64 / self.secs
    }

    fn p99(&self) -> f64 {
        percentile(&self.latencies, 99.0)
    }

    /// The median over rounds of this arm's figure `k` (0 p50, 1 p99,
    /// 2 TPS) over `other`'s in the same round: a paired estimate that one
    /// noisy round (a burst from elsewhere on the machine landing on one
    /// arm) cannot move, unlike the pooled percentile.
    fn paired(&self, other: &Arm, k: usize) -> f64 {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .zip(&other.runs)
            .map(|(a, b)| a[k] / b[k])
            .collect();
        median(&ratios)
    }
}

/// The by-hand quorum: a Postgres started with pg_ctl, three standbys of
/// it, `synchronous_standby_names = 'ANY 2 (...)'` by ALTER SYSTEM + reload.
struct FloorQuorum {
    primary: Cluster,
    _standbys: Vec<Cluster>,
}

impl FloorQuorum {
    async fn start() -> anyhow::Result<Self> {
        let port = crate::ports::free_port();
        let primary = Cluster::primary(port).context("the by-hand primary")?;
        let c = session(port, SUPERUSER, "postgres").await?;
        c.batch_execute("CREATE TABLE commit_load (id bigint)")
            .await?;
        let mut standbys = Vec::new();
        for _ in 0..3 {
            let p = crate::ports::free_port();
            standbys.push(Cluster::standby_of(port, p, &sk_name(p)).context("a by-hand standby")?);
        }
        let sb_ports: Vec<u16> = standbys.iter().map(|s| s.port).collect();
        c.batch_execute(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{}'",
            any_2_of(&sb_ports).replace('\'', "''")
        ))
        .await?;
        c.simple_query("SELECT pg_reload_conf()").await?;
        let names: Vec<String> = sb_ports.iter().map(|p| sk_name(*p)).collect();
        wait_quorum(&c, &names, 3, None, LIMIT).await?;
        Ok(Self {
            primary,
            _standbys: standbys,
        })
    }
}

/// A by-hand quorum whose primary is made as ours is: three safekeepers of
/// its own (standbys of a bootstrap cluster, then stopped), the primary a
/// base backup of the most advanced, promoted, by the by-hand start
/// sequence (`durable_floor::start_by_hand`). Against the floor (a fresh
/// initdb) it shows what the cluster's origin alone does to commits.
struct PromotedQuorum {
    primary: Cluster,
    _safekeepers: Safekeepers,
}

impl PromotedQuorum {
    async fn start() -> anyhow::Result<Self> {
        let safekeepers = Safekeepers::start().await?;
        let port = crate::ports::free_port();
        let (primary, _) = floor::start_by_hand(&safekeepers.ports(), port, LIMIT)
            .await
            .context("the promoted by-hand primary")?;
        Ok(Self {
            primary,
            _safekeepers: safekeepers,
        })
    }
}

/// `name = setting` of every setting not at its default, as a map.
async fn non_default(
    c: &tokio_postgres::Client,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let rows = c
        .simple_query(
            "SELECT name, setting FROM pg_settings WHERE source NOT IN ('default', 'override')",
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0)?.to_owned(), r.get(1).unwrap_or("").to_owned()))
            }
            _ => None,
        })
        .collect())
}

/// The settings where ours and the floor's primary differ (ports and
/// names aside): what else could make their commits differ.
async fn settings_diff(
    o: &tokio_postgres::Client,
    f: &tokio_postgres::Client,
) -> anyhow::Result<Value> {
    let (a, b) = (non_default(o).await?, non_default(f).await?);
    let mut diff = serde_json::Map::new();
    for name in a.keys().chain(b.keys()) {
        if matches!(
            name.as_str(),
            "port"
                | "synchronous_standby_names"
                | "data_directory"
                | "config_file"
                | "hba_file"
                | "ident_file"
        ) {
            continue;
        }
        if a.get(name) != b.get(name) {
            diff.insert(name.clone(), json!([a.get(name), b.get(name)]));
        }
    }
    Ok(Value::Object(diff))
}

/// The WAL senders' lags as `pg_stat_replication` shows them.
async fn senders(c: &tokio_postgres::Client) -> anyhow::Result<Value> {
    let rows = c
        .simple_query(
            "SELECT application_name, state, sync_state, write_lag::text, flush_lag::text \
             FROM pg_stat_replication ORDER BY application_name",
        )
        .await?;
    Ok(json!(
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..5)
                        .map(|i| r.get(i).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
    ))
}

/// CPU time (user + system, ms) the process `pid` has used so far.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis: 14 and 15 of stat(5).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).unwrap_or(&"0").parse::<f64>()? + f.get(12).unwrap_or(&"0").parse::<f64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(ticks * 1000.0 / hz)
}

/// Checkpoints (timed, requested) and buffers the checkpointer wrote, as
/// `pg_stat_bgwriter` shows them (PG 15/16: its columns; later majors
/// moved them to `pg_stat_checkpointer`).
async fn checkpoints(c: &tokio_postgres::Client) -> Value {
    match value(
        c,
        "SELECT concat_ws(' ', checkpoints_timed, checkpoints_req, buffers_checkpoint) FROM pg_stat_bgwriter",
    )
    .await
    {
        Ok(v) => json!(v),
        Err(e) => json!(format!("{e}")),
    }
}

/// Commit latency and TPS, ours and the by-hand quorum alternating, with a
/// second by-hand quorum (the twin) in the same rotation: twin over floor
/// is an A/A ratio, what this machine's noise alone makes of two identical
/// setups, the resolution the ours-over-floor ratios are read against.
async fn commits(plan: Plan, ours: &Compute) -> anyhow::Result<Vec<CaseResult>> {
    let floor = FloorQuorum::start().await?;
    let twin = FloorQuorum::start().await?;
    let promoted = PromotedQuorum::start().await?;
    let o = session(ours.pg_port, SUPERUSER, "postgres").await?;
    let f = session(floor.primary.port, SUPERUSER, "postgres").await?;
    let settings = json!({
        "ours": {
            "synchronous_standby_names": value(&o, "SHOW synchronous_standby_names").await?,
            "synchronous_commit": value(&o, "SHOW synchronous_commit").await?,
            "fsync": value(&o, "SHOW fsync").await?,
        },
        "floor": {
            "synchronous_standby_names": value(&f, "SHOW synchronous_standby_names").await?,
            "synchronous_commit": value(&f, "SHOW synchronous_commit").await?,
            "fsync": value(&f, "SHOW fsync").await?,
        },
        "differ_ours_floor": settings_diff(&o, &f).await?,
    });
    let mut rows = Vec::new();
    for clients in [1usize, 8] {
        let cpu_before = cpu_ms(ours.pid())?;
        let checkpoints_before =
            json!({"ours": checkpoints(&o).await, "floor": checkpoints(&f).await});
        let max_tx = plan.durable_load_tx / clients;
        let secs = plan.durable_load_secs;
        let (mut q, mut by_hand, mut local) = (Arm::default(), Arm::default(), Arm::default());
        let (mut a_a, mut p) = (Arm::default(), Arm::default());
        for round in 0..plan.durable_load_rounds {
            // Each arm goes first, second, third and fourth equally often.
            for turn in 0..4 {
                match (round + turn) % 4 {
                    0 => q.add(load(ours.pg_port, clients, max_tx, secs, false).await?),
                    1 => by_hand.add(load(floor.primary.port, clients, max_tx, secs, false).await?),
                    2 => a_a.add(load(twin.primary.port, clients, max_tx, secs, false).await?),
                    _ => p.add(load(promoted.primary.port, clients, max_tx, secs, false).await?),
                }
            }
        }
        // After the paired rounds, not between them: interleaved, it gave
        // ours' cluster twice the floor's inserts (and autovacuum work).
        for _ in 0..plan.durable_load_rounds.div_ceil(4) {
            local.add(load(ours.pg_port, clients, max_tx, secs, true).await?);
        }
        let (so, sf) = (Summary::of(&q.latencies), Summary::of(&by_hand.latencies));
        let p99_ratio = q.p99() / by_hand.p99();
        let tps_ratio = by_hand.tps() / q.tps();
        let mut row = CaseResult::new(
            "durable_commit",
            format!(
                "{clients} client{}, ANY 2 of 3",
                if clients == 1 { "" } else { "s" }
            ),
            so,
            Some(sf),
        )
        .with_extra(json!({
            "p99_ms": {"ours": q.p99(), "floor": by_hand.p99(), "ratio": p99_ratio},
            "tps": {"ours": q.tps(), "floor": by_hand.tps(), "floor_over_ours": tps_ratio},
            "transactions": {"ours": q.tx, "floor": by_hand.tx},
            "runs_p50_p99_tps": {"ours": q.runs, "floor": by_hand.runs, "twin": a_a.runs, "promoted": p.runs},
            "paired_rounds_median": {
                "ours_over_floor": {"p50": q.paired(&by_hand, 0), "p99": q.paired(&by_hand, 1), "tps_floor_over_ours": by_hand.paired(&q, 2)},
                "twin_over_floor": {"p50": a_a.paired(&by_hand, 0), "p99": a_a.paired(&by_hand, 1), "tps_floor_over_twin": by_hand.paired(&a_a, 2)},
            },
            // Information, not the verdict: a by-hand primary made as ours
            // is (base backup of a safekeeper, promoted) over the floor.
            "promoted_by_hand_over_floor": {
                "p50": median(&p.latencies) / median(&by_hand.latencies),
                "p99": p.p99() / by_hand.p99(),
                "tps_floor_over_promoted": by_hand.tps() / p.tps(),
                "paired_p99": p.paired(&by_hand, 1),
                "ours_over_promoted_p99": q.p99() / p.p99(),
            },
            "a_a_twin_over_floor": {
                "p50": median(&a_a.latencies) / median(&by_hand.latencies),
                "p99": a_a.p99() / by_hand.p99(),
                "tps_floor_over_twin": by_hand.tps() / a_a.tps(),
            },
            "local_commit_ours": {
                "p50_ms": median(&local.latencies),
                "p99_ms": local.p99(),
                "tps": local.tps(),
            },
            "settings": settings,
            // What ours' compute_ctl and checkpointers did meanwhile (a
            // busy neighbour of ours would show here).
            "compute_ctl_cpu_ms_during_rounds": cpu_ms(ours.pid())? - cpu_before,
            "checkpoints_timed_req_buffers": {
                "before": checkpoints_before,
                "after": {"ours": checkpoints(&o).await, "floor": checkpoints(&f).await},
            },
            "senders_after": {"ours": senders(&o).await?, "floor": senders(&f).await?},
        }));
        row.target = "<= 1.05x (p50, p99, TPS)";
        row.met = row
            .ratio
            .map(|r| r <= 1.05 && p99_ratio <= 1.05 && tps_ratio <= 1.05);
        rows.push(row);
    }
    Ok(rows)
}

/// Safekeeper moves under a writer: `abc` → `abd` → `abc` ...
async fn moves(plan: Plan, ours: &Compute, sks: &Safekeepers) -> anyhow::Result<CaseResult> {
    let abc = sks.ports();
    let d_port = crate::ports::free_port();
    // A new member holds this compute's timeline: a clone of a current one.
    let d = Cluster::standby_of(abc[1], d_port, "clone").context("safekeeper d")?;
    let abd = vec![abc[0], abc[1], d.port];
    let pid0 = postgres::postmaster_pid(&ours.pgdata)?;
    let watch = session(ours.pg_port, SUPERUSER, "postgres").await?;
    let writer = session(ours.pg_port, SUPERUSER, "postgres").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writer
                    .execute("INSERT INTO commit_load VALUES (-1)", &[])
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }
    });
    let (mut after, mut rtt) = (Vec::new(), Vec::new());
    for i in 0..plan.durable_moves {
        let to = if i % 2 == 0 { &abd } else { &abc };
        let mut s = spec(to, &format!("move-{i}"));
        s["pageserver_connstring"] = json!(connstr(abc[0]));
        s["skip_pg_catalog_updates"] = json!(true);
        s["safekeepers_generation"] = json!(2 + i);
        let body = Compute::configure_body(&s)?;
        let t = Instant::now();
        let (code, answer) = ours.configure_raw(body).await?;
        let answered = Instant::now();
        rtt.push(ms(answered - t));
        if code != 200 {
            bail!("move {i}: {code} {answer}");
        }
        let lsn = value(&watch, "SELECT pg_current_wal_flush_lsn()").await?;
        let names: Vec<String> = to.iter().map(|p| sk_name(*p)).collect();
        wait_quorum(&watch, &names, 2, Some(&lsn), Duration::from_secs(10))
            .await
            .with_context(|| format!("move {i}: the new quorum"))?;
        after.push(ms(answered.elapsed()));
        // Untimed: every member of the new set streams before the next move.
        let deadline = Instant::now() + LIMIT;
        while in_quorum(&watch, &names, None).await? < 3 {
            if Instant::now() > deadline {
                bail!("move {i}: not all of the new set stream");
            }
            tokio::time::sleep(POLL).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rows_written = written.await??;
    let restarts = u32::from(postgres::postmaster_pid(&ours.pgdata)? != pid0);
    let max_ms = after.iter().copied().fold(0.0, f64::max);
    let mut row = CaseResult::new(
        "durable_move",
        "sk move notify -> new quorum",
        Summary::of(&after),
        None,
    )
    .with_extra(json!({
        "moves": plan.durable_moves,
        "max_ms": max_ms,
        "notify_round_trip_ms": {"median": median(&rtt), "max": rtt.iter().copied().fold(0.0, f64::max)},
        "rows_written_during": rows_written,
        "postmaster_restarts": restarts,
    }));
    row.target = "<= 1000 ms, 0 restarts";
    row.met = Some(max_ms <= 1000.0 && restarts == 0);
    drop(d);
    Ok(row)
}

pub async fn durable(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let sks = Safekeepers::start().await.context("three safekeepers")?;
    let (start_row, ours) = starts(plan, &sks).await?;
    let mut rows = vec![start_row];
    if std::env::var("COMPETE_STARTS_ONLY").is_ok() {
        return Ok(rows);
    }
    rows.extend(commits(plan, &ours).await.context("the commit load")?);
    rows.push(moves(plan, &ours, &sks).await.context("safekeeper moves")?);
    drop(ours);
    Ok(rows)
}
