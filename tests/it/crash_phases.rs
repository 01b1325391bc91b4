//! Crash at every phase, on real Postgres (issue 15, item 1).
//!
//! One cell per (target, phase): the target is Postgres (the postmaster, or
//! the initdb / pg_basebackup that prepares PGDATA) or compute_ctl itself;
//! the phases are those of a first start (PGDATA from initdb or from a base
//! backup, config write, Postgres start, catalog apply) and of a reconfigure
//! (config write, reload, catalog). A test build of compute_ctl stops
//! itself (SIGSTOP) as it enters a phase named in `COMPUTE_CTL_FAILPOINT`
//! and again as it enters the next one; a trial resumes it there, waits a
//! random part of that phase's duration (calibrated from the binary's own
//! `/metrics.json` timings in a clean run), and sends SIGKILL. So every kill
//! lands inside its phase (or exactly at its end), spread over the phase.
//!
//! Each trial must end in a clear outcome (Postgres killed: compute_ctl exits
//! non-zero and says why; compute_ctl killed: nothing of it stays in the way
//! of the next start), and a restart from the same spec must converge:
//! every role with its password, the database, the setting, the source's
//! rows (lost data, measured and required to be 0), no process of the old
//! run left (orphans, measured), and a clean terminate with no
//! `postmaster.pid` left.
//!
//! Trials per cell: 1 by default (in `just test`), 20 with
//! `COMPUTE_CTL_CHAOS_SCALE=full` (`just chaos`). The delays come from a
//! seeded RNG (`COMPUTE_CTL_CHAOS_SEED`, printed); with
//! `COMPUTE_CTL_CHAOS_REPORT=DIR` every trial is a line of
//! `DIR/crash_phases.jsonl`, a failed one included (`"survived": false` and
//! why): the row holds what the trial measured (`support::chaos::trial`).
#![allow(clippy::disallowed_methods)]

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::failpoint::{stopped, wait_stopped};
use crate::support::os::{alive, args_of, descendants, kill_running, processes_in, program_of};
use crate::support::postgres::TestPostgres;
use crate::support::{md5_hex, wait_for};
use compute_ctl::env::{Fs as _, TokioEnv};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Roles in the spec: enough that the catalog apply is a phase one can hit.
const ROLES: usize = 200;
/// Rows the base backup source holds; each must reach the compute.
const SOURCE_ROWS: i64 = 1_000;
/// The shortest window a kill is spread over: a phase that the timings
/// show as 0 ms (a reload is one signal) still has Postgres at work on it.
const MIN_WINDOW: Duration = Duration::from_millis(3);

fn trials() -> usize {
    if support::chaos::full() { 20 } else { 1 }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// The postmaster, or during PGDATA preparation the initdb or
    /// pg_basebackup at work.
    Postgres,
    ComputeCtl,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Initdb,
    BaseBackup,
}

/// A phase, by the failpoint at its entry and the one that ends it.
#[derive(Debug, Clone, Copy)]
struct Phase {
    name: &'static str,
    end: &'static str,
}

impl Phase {
    const fn new(name: &'static str, end: &'static str) -> Phase {
        Phase { name, end }
    }

    fn reconfigure(&self) -> bool {
        self.name.starts_with("reconfigure.")
    }
}

const PREPARE_PGDATA: Phase = Phase::new("start.prepare_pgdata", "start.write_config");
const START_WRITE_CONFIG: Phase = Phase::new("start.write_config", "start.start_postgres");
const START_POSTGRES: Phase = Phase::new("start.start_postgres", "start.catalog");
const START_CATALOG: Phase = Phase::new("start.catalog", "start.done");
const RECONFIGURE_WRITE_CONFIG: Phase =
    Phase::new("reconfigure.write_config", "reconfigure.reload");
const RECONFIGURE_RELOAD: Phase = Phase::new("reconfigure.reload", "reconfigure.catalog");
const RECONFIGURE_CATALOG: Phase = Phase::new("reconfigure.catalog", "reconfigure.done");

/// A spec with [`ROLES`] md5 roles whose passwords carry `generation`,
/// its PGDATA from `source` when there is one.
fn spec(operation: &str, generation: u32, source: Option<&TestPostgres>) -> Value {
    let roles: Vec<Value> = (0..ROLES)
        .map(|i| {
            let name = format!("crash_role_{i}");
            json!({"name": name, "encrypted_password": md5_hex(&format!("pw{generation}"), &name)})
        })
        .collect();
    let mut s = json!({
        "format_version": 1.0,
        "operation_uuid": operation,
        "cluster": {
            "roles": roles,
            "databases": [{"name": "crash_db", "owner": "crash_role_0"}],
            "settings": [{"name": "work_mem", "value": format!("{}kB", 4096 + generation), "vartype": "string"}],
        },
    });
    if let Some(src) = source {
        s["pageserver_connstring"] = src.connstr().into();
    }
    s
}

/// A base backup source holding [`SOURCE_ROWS`] rows.
async fn source() -> TestPostgres {
    let src = TestPostgres::storage().await;
    src.exec(&format!(
        "CREATE TABLE crash_rows AS SELECT g AS id FROM generate_series(1, {SOURCE_ROWS}) g"
    ))
    .await;
    src
}

/// How long each phase takes on this machine, from a clean start and
/// reconfigure of the same specs (the binary's own `/metrics.json`).
#[derive(Debug, Clone)]
struct Calibration {
    prepare_pgdata: Duration,
    start_postgres: Duration,
    start_catalog: Duration,
    write_config: Duration,
    reload: Duration,
    reconfigure_catalog: Duration,
}

impl Calibration {
    async fn measure(source: Option<&TestPostgres>) -> Calibration {
        let c = Compute::start(ComputeOpts::with_spec(spec("calibrate-a", 1, source)));
        c.wait_status("running", Duration::from_secs(90)).await;
        let r = c.configure(&spec("calibrate-b", 2, source), None).await;
        assert_eq!(r.status, 200, "calibration reconfigure: {}", r.text);
        let m = c.get("/metrics.json").await.json();
        let ms = |v: &Value| Duration::from_millis(v.as_u64().unwrap_or(0));
        let startup = |k: &str| {
            ms(if m[k].is_null() {
                &m["startup"][k]
            } else {
                &m[k]
            })
        };
        let last = &m["last_reconfigure"];
        let cal = Calibration {
            prepare_pgdata: startup("prepare_pgdata_ms"),
            start_postgres: startup("start_postgres_ms"),
            start_catalog: startup("config_ms"),
            write_config: ms(&last["write_config_ms"]),
            reload: ms(&last["reload_ms"]),
            reconfigure_catalog: ms(&last["catalog_ms"]),
        };
        assert!(
            cal.prepare_pgdata > Duration::ZERO && cal.reconfigure_catalog > Duration::ZERO,
            "the calibration run reported no phase timings: {m}"
        );
        cal
    }

    /// The span a kill in `phase` is spread over.
    fn window(&self, phase: Phase) -> Duration {
        let d = match phase.name {
            "start.prepare_pgdata" => self.prepare_pgdata,
            "start.write_config" | "reconfigure.write_config" => self.write_config,
            "start.start_postgres" => self.start_postgres,
            "start.catalog" => self.start_catalog,
            "reconfigure.reload" => self.reload,
            "reconfigure.catalog" => self.reconfigure_catalog,
            other => unreachable!("no calibration for {other}"),
        };
        d.max(MIN_WINDOW)
    }
}

/// Every process of this compute: compute_ctl's descendants and whatever
/// works in its PGDATA.
fn processes_of(c: &Compute) -> BTreeSet<i32> {
    let mut all: BTreeSet<i32> = descendants(c.pid as i32).into_iter().collect();
    all.extend(processes_in(&c.pgdata));
    all
}

/// The Postgres process to kill in `phase`: the postmaster, or while PGDATA
/// is prepared the initdb or pg_basebackup (or a postgres it runs).
fn victim(c: &Compute, phase: Phase) -> Option<i32> {
    if phase.name != PREPARE_PGDATA.name {
        return c.postmaster_pid();
    }
    descendants(c.pid as i32)
        .into_iter()
        .find(|&pid| is_preparing_pgdata(pid))
}

/// Whether `pid` is a program that writes PGDATA: initdb, its `postgres
/// --boot`/`--single` backends, or pg_basebackup. Not the settings probes
/// (`postgres --version`, `--describe-config`, `-C`) that compute_ctl runs
/// beside them: killing one of those fails no start, so a trial that hit
/// one waited for an exit that never came.
fn is_preparing_pgdata(pid: i32) -> bool {
    match program_of(pid).as_deref() {
        Some("initdb" | "pg_basebackup") => true,
        Some("postgres") => {
            args_of(pid).is_some_and(|a| a.iter().any(|x| x == "--boot" || x == "--single"))
        }
        _ => false,
    }
}

/// What the compute holds that the spec (and source) says it should not
/// miss: roles without their generation's password, the database, the
/// setting, the source's rows. 0 when converged; `None` while it answers no
/// query.
async fn lost_data(c: &Compute, generation: u32, source: Source) -> Option<i64> {
    let client = c.connect().await.ok()?;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE rolpassword = 'md5' || md5($1 || rolname)) \
             FROM pg_authid WHERE rolname LIKE 'crash\\_role\\_%'",
            &[&format!("pw{generation}")],
        )
        .await
        .ok()?;
    let mut lost = ROLES as i64 - row.get::<_, i64>(0);
    let db = client
        .query_one(
            "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
             WHERE datname = 'crash_db' AND rolname = 'crash_role_0'",
            &[],
        )
        .await
        .ok()?;
    lost += 1 - db.get::<_, i64>(0);
    let work_mem = client.query_one("SHOW work_mem", &[]).await.ok()?;
    let want = format!("{}kB", 4096 + generation);
    lost += i64::from(work_mem.get::<_, String>(0) != want);
    if source == Source::BaseBackup {
        let rows = client
            .query_one("SELECT count(*) FROM crash_rows", &[])
            .await
            .ok()?;
        lost += SOURCE_ROWS - rows.get::<_, i64>(0);
    }
    Some(lost)
}

struct Cell {
    target: Target,
    phase: Phase,
    source: Source,
}

/// One trial; `None` when the kill found nothing to hit (PGDATA's program
/// had already finished), so that the campaign runs another. `missed`
/// holds the delay of the last trial that found nothing (the program was
/// gone by then); this one sets it when it finds nothing.
async fn trial(
    cell: &Cell,
    src: Option<&TestPostgres>,
    cal: &Calibration,
    rng: &mut rand::rngs::SmallRng,
    n: usize,
    missed: &std::cell::Cell<Option<Duration>>,
) -> Option<Value> {
    let phase = cell.phase;
    let mut opts = ComputeOpts::with_spec(spec(&format!("crash-{n}-a"), 1, src));
    opts.env.push((
        "COMPUTE_CTL_FAILPOINT".into(),
        format!("{},{}", phase.name, phase.end),
    ));
    let mut c = Compute::start(opts);
    let generation = if phase.reconfigure() {
        c.wait_status("running", Duration::from_secs(90)).await;
        // In flight when the kill lands.
        c.send_configure_into_fault(&spec(&format!("crash-{n}-b"), 2, src));
        2
    } else {
        1
    };
    wait_stopped(&c, phase.name).await;
    // The tool preparing PGDATA runs in the early part of its phase (the
    // backup's size and control data are read after it), and the
    // calibration's run can be several times slower than a trial's: a
    // trial after one that found the tool already gone draws from the
    // first half of that one's delay (the tool ran for less than it).
    let window = match missed.get() {
        Some(gone_by) if phase.name == PREPARE_PGDATA.name => gone_by / 2,
        _ => cal.window(phase),
    };
    let delay = window.mul_f64(rng.random_range(0.0..1.0));
    c.signal(Signal::SIGCONT);
    // Fault timing, not synchronisation: the point to hit is random.
    tokio::time::sleep(delay).await;
    let at_end = stopped(&c);
    let old = processes_of(&c);
    let old_postmaster = c.postmaster_pid();
    let outcome = match cell.target {
        Target::Postgres => {
            // A tool preparing PGDATA runs for only part of its phase (the
            // source's version check and the stale-process sweep come
            // first): the kill lands at the first moment from `delay` on
            // that one runs, before compute_ctl reaches the phase's end
            // (a loaded machine stretches the phase past its calibration).
            let found = match victim(&c, phase) {
                Some(pid) => Some(pid),
                None if phase.name == PREPARE_PGDATA.name => {
                    support::poll_until(Duration::from_secs(30), || async {
                        match victim(&c, phase) {
                            Some(pid) => Some(Some(pid)),
                            None if stopped(&c) => Some(None),
                            None => None,
                        }
                    })
                    .await
                    .flatten()
                }
                None => None,
            };
            // The program may be on its way out when it is found: a kill
            // that cannot land is a miss, not a failure compute_ctl missed.
            let hit = match found {
                Some(pid) => kill_running(pid).await,
                None => false,
            };
            if !hit {
                missed.set(Some(delay));
                eprintln!(
                    "{} trial {n}: nothing to kill {delay:?} into the phase; another trial runs",
                    phase.name
                );
                return None;
            }
            // compute_ctl may be (or come to be) stopped at the phase's end.
            let exit = wait_for(Duration::from_secs(60), "compute_ctl to exit", || async {
                if stopped(&c) {
                    c.signal(Signal::SIGCONT);
                }
                c.try_exit()
            })
            .await;
            let log = c.log();
            assert!(
                !exit.success(),
                "Postgres killed in {}: compute_ctl exited 0\n{log}",
                phase.name
            );
            assert!(
                log.contains("compute failed:"),
                "Postgres killed in {}: no reason given on exit\n{log}",
                phase.name
            );
            format!("exit {}, reason given", exit.code().unwrap_or(-1))
        }
        Target::ComputeCtl => {
            c.signal(Signal::SIGKILL);
            let exit = c.wait_exit(Duration::from_secs(30)).await;
            format!("killed ({exit})")
        }
    };

    // Restart from the spec the compute was working on, without failpoints.
    c.opts_mut().env.clear();
    let t0 = Instant::now();
    c.respawn(Some(spec(&format!("crash-{n}-r"), generation, src)));
    c.wait_status("running", Duration::from_secs(90)).await;
    // Measured, not required here: a loss shows in the trial's row, and the
    // row fails the test (support::chaos::trial).
    let lost = support::chaos::settle(Duration::from_secs(30), || {
        lost_data(&c, generation, cell.source)
    })
    .await;
    let converge_ms = t0.elapsed().as_millis() as u64;
    let new = processes_of(&c);
    let orphans: Vec<i32> = old
        .iter()
        .copied()
        .filter(|&p| alive(p) && !new.contains(&p))
        .collect();
    if let Some(pm) = old_postmaster {
        assert!(
            !alive(pm) || Some(pm) == c.postmaster_pid(),
            "the old postmaster {pm} is alive beside the new one"
        );
    }
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let exit = c.wait_exit(Duration::from_secs(60)).await;
    assert!(
        exit.success(),
        "terminate after recovery: {exit}\n{}",
        c.log()
    );
    wait_for(
        Duration::from_secs(30),
        "every Postgres process to be gone",
        || async { c.postgres_processes().is_empty().then_some(()) },
    )
    .await;
    assert!(
        !c.pgdata.join("postmaster.pid").exists(),
        "postmaster.pid left after a clean terminate"
    );
    Some(json!({
        "delay_us": delay.as_micros() as u64,
        "window_us": window.as_micros() as u64,
        "landed": if at_end { "at the phase's end" } else { "inside the phase" },
        "outcome": outcome,
        "converged": lost == Some(0),
        "converge_ms": converge_ms,
        "orphans": orphans.len(),
        "orphan_pids": orphans,
        "lost_data": lost,
    }))
}

/// Calibrations, one per source, shared by the cells of this process.
async fn calibration(source: Source) -> Calibration {
    static INITDB: tokio::sync::OnceCell<Calibration> = tokio::sync::OnceCell::const_new();
    static BASE_BACKUP: tokio::sync::OnceCell<Calibration> = tokio::sync::OnceCell::const_new();
    let cell = match source {
        Source::Initdb => &INITDB,
        Source::BaseBackup => &BASE_BACKUP,
    };
    cell.get_or_init(|| async {
        let src = match source {
            Source::BaseBackup => Some(self::source().await),
            Source::Initdb => None,
        };
        let cal = Calibration::measure(src.as_ref()).await;
        eprintln!("calibration ({source:?}): {cal:?}");
        cal
    })
    .await
    .clone()
}

async fn campaign(cell: Cell) {
    crate::need_postgres!();
    let seed = support::chaos::seed();
    eprintln!(
        "crash cell {:?} in {} ({:?}): seed {seed} (COMPUTE_CTL_CHAOS_SEED={seed} replays its delays)",
        cell.target, cell.phase.name, cell.source
    );
    let cal = calibration(cell.source).await;
    let src = match cell.source {
        Source::BaseBackup => Some(source().await),
        Source::Initdb => None,
    };
    let salt = cell.phase.name.bytes().fold(cell.target as u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ salt);
    let (mut done, mut missed) = (0, 0);
    let gone_by = std::cell::Cell::new(None);
    while done < trials() {
        let n = done + missed;
        let identity = json!({
            "target": format!("{:?}", cell.target),
            "phase": cell.phase.name,
            "source": format!("{:?}", cell.source),
            "trial": n,
        });
        let body = trial(&cell, src.as_ref(), &cal, &mut rng, n, &gone_by);
        match support::chaos::trial("crash_phases", identity, body).await {
            Some(_) => done += 1,
            None => {
                missed += 1;
                assert!(
                    missed <= trials() * 2,
                    "{missed} trials of {} found nothing to kill: the calibration is off ({cal:?})",
                    cell.phase.name
                );
            }
        }
    }
}

/// Bytes of the regular files below `dir` (0 while it cannot be read, as
/// when a file is renamed mid-scan).
async fn bytes_below(dir: &std::path::Path) -> u64 {
    TokioEnv::new().dir_size(dir).await.unwrap_or(0)
}

/// Rows of the ballast table: about 220 MB, a copy long enough to cut.
const BALLAST_ROWS: i64 = 200_000;

/// A source holding [`SOURCE_ROWS`] rows and the ballast.
async fn ballast_source() -> TestPostgres {
    let src = source().await;
    src.exec(&format!(
        "CREATE TABLE ballast AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, {BALLAST_ROWS}) g"
    ))
    .await;
    src
}

/// A compute whose base backup from `src` is under way (8 MB copied), and
/// how many bytes were in PGDATA then.
async fn copy_under_way(src: &TestPostgres, operation: &str) -> (Compute, u64) {
    let mut opts = ComputeOpts::with_spec(spec(operation, 1, Some(src)));
    opts.env
        .push(("COMPUTE_CTL_FAILPOINT".into(), PREPARE_PGDATA.name.into()));
    let c = Compute::start(opts);
    wait_stopped(&c, PREPARE_PGDATA.name).await;
    c.signal(Signal::SIGCONT);
    let copied = wait_for(
        Duration::from_secs(60),
        "the base backup to be under way (8 MB in PGDATA)",
        || async {
            let n = bytes_below(&c.pgdata).await;
            (n > 8 << 20).then_some(n)
        },
    )
    .await;
    (c, copied)
}

/// compute_ctl's exit after a failed start: non-zero, with a reason that
/// names PGDATA and pg_basebackup.
async fn failed_start_reason(c: &Compute) -> (std::process::ExitStatus, String) {
    let exit = c.wait_exit(Duration::from_secs(60)).await;
    let log = c.log();
    assert!(!exit.success(), "the start succeeded\n{log}");
    let reason = log
        .lines()
        .find(|l| l.contains("compute failed:"))
        .unwrap_or_else(|| panic!("no reason given on exit\n{log}"))
        .to_string();
    assert!(
        reason.contains("PGDATA") && reason.contains("pg_basebackup"),
        "the reason names neither the base backup nor PGDATA: {reason}"
    );
    (exit, reason)
}

/// Waits until none of `pids` runs.
async fn all_gone(pids: &BTreeSet<i32>, what: &str) {
    wait_for(Duration::from_secs(10), what, || async {
        pids.iter().all(|&p| !alive(p)).then_some(())
    })
    .await;
}

/// Restarts compute_ctl from its spec, without failpoints, and waits until
/// it holds everything (ballast included) or 30 s pass; returns what it
/// measured: the lost data (`None` when it could not be read), whether it
/// converged, and the time it took in ms.
async fn restart_converges(c: &mut Compute) -> Value {
    c.opts_mut().env.clear();
    let t0 = Instant::now();
    c.respawn(None);
    c.wait_status("running", Duration::from_secs(90)).await;
    let lost = support::chaos::settle(Duration::from_secs(30), || async {
        let lost = lost_data(c, 1, Source::BaseBackup).await?;
        let ballast: i64 = c
            .sql_value("SELECT count(*) FROM ballast")
            .await
            .parse()
            .ok()?;
        Some(lost + (BALLAST_ROWS - ballast))
    })
    .await;
    let converge_ms = t0.elapsed().as_millis() as u64;
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(c.wait_exit(Duration::from_secs(60)).await.success());
    json!({"converged": lost == Some(0), "lost_data": lost, "converge_ms": converge_ms})
}

/// The base backup source dies mid-copy (issue 15, item 2): every process
/// of the source cluster is killed once some MB have arrived, as when its
/// host goes. The start fails and says why, nothing of the copy keeps
/// running, and once the source is back a restart from the same spec
/// converges with every row of the source.
#[tokio::test]
async fn the_source_dying_during_the_base_backup_fails_the_start_and_a_restart_converges() {
    crate::need_postgres!();
    let identity = json!({"fault": "base backup source killed mid-copy", "trials": 1});
    support::chaos::trial("source_faults", identity, async {
        let mut src = ballast_source().await;
        let (mut c, copied) = copy_under_way(&src, "source-dies").await;
        let copying = processes_of(&c);
        src.kill_all();
        let (exit, _) = failed_start_reason(&c).await;
        all_gone(&copying, "the base backup's processes to be gone").await;
        src.restart(support::storage::STORAGE_SETTINGS).await;
        let mut row = restart_converges(&mut c).await;
        row["detail"] = format!(
            "killed after {} MB copied; exit {}; restart converged in {} ms",
            copied >> 20,
            exit.code().unwrap_or(-1),
            row["converge_ms"]
        )
        .into();
        Some(row)
    })
    .await;
}

/// Whether `pid` runs pg_basebackup.
fn is_base_backup(pid: i32) -> bool {
    program_of(pid).as_deref() == Some("pg_basebackup")
}

/// pg_basebackup killed mid-copy, its forked WAL streamer not: the
/// streamer held compute_ctl's pipes open and the start hung for ever (found
/// by `postgres_killed_in_base_backup`). A program run to completion now has
/// its own process group, killed once it exits: the start fails at once and
/// says why. Then compute_ctl killed mid-copy while the streamer waits on a
/// frozen source (so that it surely outlives compute_ctl, as it sometimes
/// does on its own): the next start kills it before it recreates PGDATA, so
/// nothing of the old run goes on writing into the new one.
#[tokio::test]
async fn nothing_a_killed_base_backup_forked_outlives_it() {
    crate::need_postgres!();
    let src = ballast_source().await;
    let (mut c, _) = copy_under_way(&src, "streamer-a").await;
    let copying = processes_of(&c);
    // The first pg_basebackup is the parent; the streamer is its child.
    let parent = *copying
        .iter()
        .find(|&&p| is_base_backup(p))
        .expect("pg_basebackup at work");
    assert!(
        kill_running(parent).await,
        "pg_basebackup finished before it could be killed: the ballast source is too small"
    );
    failed_start_reason(&c).await;
    all_gone(&copying, "pg_basebackup's WAL streamer to go with it").await;

    c.opts_mut().env = vec![("COMPUTE_CTL_FAILPOINT".into(), PREPARE_PGDATA.name.into())];
    c.respawn(None);
    wait_stopped(&c, PREPARE_PGDATA.name).await;
    c.signal(Signal::SIGCONT);
    // The first copy's leftovers stay in PGDATA until this run removes
    // them: under way means its pg_basebackup and streamer run, 8 MB in.
    wait_for(
        Duration::from_secs(60),
        "the second base backup to be under way",
        || async {
            let copiers = descendants(c.pid as i32)
                .into_iter()
                .filter(|&p| is_base_backup(p))
                .count();
            (copiers >= 2 && bytes_below(&c.pgdata).await > 8 << 20).then_some(())
        },
    )
    .await;
    let copying = processes_of(&c);
    // Freeze the source: the WAL streamer waits on it, and notices its
    // parent's death only between messages (at the latest every 10 s), so
    // it surely outlives compute_ctl, as it did on its own in one crash
    // trial of seven. (Stopping the streamer itself would not do: a stopped
    // member of an orphaned process group gets SIGHUP from the kernel.)
    let frozen = processes_in(&src.data_dir());
    let signal_all = |sig: Signal| {
        for &p in &frozen {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
        }
    };
    signal_all(Signal::SIGSTOP);
    c.signal(Signal::SIGKILL);
    c.wait_exit(Duration::from_secs(30)).await;
    let outliving: Vec<i32> = copying.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        outliving.iter().any(|&p| is_base_backup(p)),
        "pg_basebackup's WAL streamer outlives compute_ctl while its source is frozen"
    );
    // The frozen source serves no base backup: the restart is from initdb,
    // into the same PGDATA.
    c.opts_mut().env.clear();
    c.respawn(Some(spec("streamer-c", 1, None)));
    c.wait_status("running", Duration::from_secs(90)).await;
    let left: Vec<i32> = outliving.iter().copied().filter(|&p| alive(p)).collect();
    signal_all(Signal::SIGCONT);
    assert!(
        left.is_empty(),
        "processes of the killed run still alive once the next start runs: {left:?}"
    );
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(c.wait_exit(Duration::from_secs(60)).await.success());
}

/// One test per cell, so that a failure names its target and phase.
macro_rules! cells {
    ($($name:ident: $target:ident, $phase:ident, $source:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            campaign(Cell { target: Target::$target, phase: $phase, source: Source::$source }).await;
        }
    )*};
}

cells! {
    postgres_killed_in_initdb: Postgres, PREPARE_PGDATA, Initdb;
    postgres_killed_in_base_backup: Postgres, PREPARE_PGDATA, BaseBackup;
    postgres_killed_in_start: Postgres, START_POSTGRES, BaseBackup;
    postgres_killed_in_start_catalog: Postgres, START_CATALOG, BaseBackup;
    postgres_killed_in_reconfigure_write: Postgres, RECONFIGURE_WRITE_CONFIG, BaseBackup;
    postgres_killed_in_reconfigure_reload: Postgres, RECONFIGURE_RELOAD, BaseBackup;
    postgres_killed_in_reconfigure_catalog: Postgres, RECONFIGURE_CATALOG, BaseBackup;
    compute_ctl_killed_in_initdb: ComputeCtl, PREPARE_PGDATA, Initdb;
    compute_ctl_killed_in_base_backup: ComputeCtl, PREPARE_PGDATA, BaseBackup;
    compute_ctl_killed_in_start_write: ComputeCtl, START_WRITE_CONFIG, BaseBackup;
    compute_ctl_killed_in_start: ComputeCtl, START_POSTGRES, BaseBackup;
    compute_ctl_killed_in_start_catalog: ComputeCtl, START_CATALOG, BaseBackup;
    compute_ctl_killed_in_reconfigure_write: ComputeCtl, RECONFIGURE_WRITE_CONFIG, BaseBackup;
    compute_ctl_killed_in_reconfigure_reload: ComputeCtl, RECONFIGURE_RELOAD, BaseBackup;
    compute_ctl_killed_in_reconfigure_catalog: ComputeCtl, RECONFIGURE_CATALOG, BaseBackup;
}
// Postgres in the first start's config write has no cell: no Postgres
// process exists then (PGDATA is prepared, the postmaster not yet started).
