//! `sim`: runs the deterministic simulation of compute_ctl.
//!
//! `sim [--seeds N] [--first S] [--seed S] [--scenario NAME] [--jobs N] [--trace FILE] [--list]`
//! Default: 1,000 seeds, each running the scenario its number picks (seeds
//! go round the scenario list). `--jobs N` splits the seeds over N worker
//! processes; the verdicts, failing seeds, table and trace are the same for
//! any N. Shows progress on stderr, prints one line per failure with the
//! command that replays it, a summary table per scenario, then
//! `N passed, M failed`, seeds per second and the simulated-to-real time
//! ratio. Exits non-zero on any failure.
#![allow(clippy::disallowed_methods)] // wall-clock timing and worker threads of the harness itself

use std::io::{BufRead, Write};
use std::process::{Command, ExitCode, Stdio};

/// The simulator allocates and frees small objects at a high rate (messages,
/// futures, statements): mimalloc is faster at that than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use compute_ctl::planted::Bug;
use sim::campaign::{self, Progress, SeedRecord};
use sim::runner::{self, SeedReport, Tracing};
use sim::scenarios::{self, Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Deterministic simulation of compute_ctl under turmoil",
    args_override_self = true
)]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run this one seed only.
    #[arg(long)]
    seed: Option<u64>,
    /// Run only this scenario (see --list).
    #[arg(long)]
    scenario: Option<String>,
    /// Split the seeds over this many worker processes (same results for any N).
    #[arg(long, default_value_t = 1)]
    jobs: u64,
    /// Write the JSONL trace here (of every seed run, in seed order).
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Run this fault schedule (JSON, as printed by --shrink) instead of the seed's own.
    #[arg(long)]
    faults: Option<String>,
    /// Shrink the fault schedule of failing seeds (slower).
    #[arg(long)]
    shrink: bool,
    /// Plant a known bug (CatalogDespiteSkipFlag, ReloadViaSql,
    /// NoStatementTimeout, NonIdempotentApply,
    /// DownscaleWithoutBuffer, AckBeforeQuorum, BackupBehindSafekeepers,
    /// SkipTimelineSwitch, UnclaimedTimeline); needs a build with
    /// compute_ctl's `planted-bugs` feature (the sim's tests have it).
    #[arg(long)]
    plant: Option<String>,
    /// Print one line per seed (scenario, simulated time, verdict).
    #[arg(long)]
    verbose: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Internal: run as a worker of `--jobs`, one JSON record per seed on stdout.
    #[arg(long, hide = true)]
    worker: bool,
}

/// What every seed of a campaign runs with.
struct Setup {
    only: Option<&'static Scenario>,
    bug: Option<Bug>,
    faults: Option<sim::faults::Schedule>,
    shrink: bool,
    tracing: Tracing,
}

/// Keeps the memory mimalloc frees for reuse instead of returning it to
/// the OS 10 ms later (its default): every seed builds and drops a world of
/// runtimes and buffers, and returned pages came back as page faults
/// (zeroed by the kernel), about a tenth of a notify seed's time. A
/// worker's memory stays at its high-water mark, which a seed reaches at
/// once. mimalloc reads its documented `MIMALLOC_PURGE_DELAY` (-1: never)
/// when it first purges; worker processes inherit it. A value the user set
/// is kept.
fn keep_freed_memory() {
    const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(PURGE_DELAY).is_none() {
        // SAFETY: the first thing main does, before any other thread exists.
        unsafe { std::env::set_var(PURGE_DELAY, "-1") };
    }
}

fn main() -> anyhow::Result<ExitCode> {
    keep_freed_memory();
    let args = Args::parse();
    if args.list {
        for s in scenarios::ALL {
            println!("{:32} {}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let only: Option<&'static Scenario> = match &args.scenario {
        Some(name) => Some(
            scenarios::find(name)
                .with_context(|| format!("no scenario named {name:?}; `sim --list` shows them"))?,
        ),
        None => None,
    };
    let bug = match &args.plant {
        None => None,
        Some(name) => {
            let bug = Bug::ALL
                .into_iter()
                .find(|b| format!("{b:?}").eq_ignore_ascii_case(name))
                .with_context(|| format!("no planted bug named {name:?}; known: {:?}", Bug::ALL))?;
            if !compute_ctl::planted::ENABLED {
                bail!(
                    "this build cannot plant bugs: build with `--features compute_ctl/planted-bugs`"
                );
            }
            Some(bug)
        }
    };
    let faults: Option<sim::faults::Schedule> = match &args.faults {
        Some(json) => Some(
            serde_json::from_str(json)
                .context("--faults is not a fault schedule (JSON as --shrink prints it)")?,
        ),
        None => None,
    };
    let setup = Setup {
        only,
        bug,
        faults,
        shrink: args.shrink,
        tracing: if args.trace.is_some() {
            Tracing::On
        } else {
            Tracing::Off
        },
    };
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first, args.seeds),
    };
    if args.worker {
        worker(&args, &setup, first, count)?;
        return Ok(ExitCode::SUCCESS);
    }

    let started = Instant::now();
    let mut progress = Progress::new(count);
    let records = if args.jobs <= 1 || count <= 1 {
        in_process(&args, &setup, first, count, &mut progress)?
    } else {
        let records = with_workers(&args, first, count, &mut progress)?;
        for r in &records {
            if args.verbose {
                println!("{}", verbose_line(r));
            }
            if !r.passed() {
                println!("{}", r.failure_line());
            }
        }
        records
    };
    progress.finish();
    let real = started.elapsed();

    let passed = records.iter().filter(|r| r.passed()).count();
    let failed = records.len() - passed;
    let simulated: u64 = records.iter().map(|r| r.simulated_us).sum();
    let simulated = Duration::from_micros(simulated);
    println!();
    print!("{}", campaign::summary_table(&records));
    println!("{passed} passed, {failed} failed");
    println!(
        "{:.0} seeds/s, simulated/real time {:.0}x ({:.1} s simulated in {:.2} s, {} job(s))",
        records.len() as f64 / real.as_secs_f64().max(1e-9),
        simulated.as_secs_f64() / real.as_secs_f64().max(1e-9),
        simulated.as_secs_f64(),
        real.as_secs_f64(),
        args.jobs.max(1)
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verbose_line(r: &SeedRecord) -> String {
    let slowest = r
        .slowest_notify_us
        .map(|us| format!(" slowest notify {:.1} ms", us as f64 / 1e3))
        .unwrap_or_default();
    format!(
        "seed {} {} {:.1}s{slowest} {}",
        r.seed,
        r.scenario,
        r.simulated_us as f64 / 1e6,
        if r.passed() { "ok" } else { "FAIL" }
    )
}

/// Runs one seed; returns its record and its trace (empty when off).
fn run_seed(setup: &Setup, seed: u64) -> (SeedRecord, String) {
    let scenario = setup.only.unwrap_or_else(|| runner::scenario_for(seed));
    let schedule = match &setup.faults {
        Some(s) => s.clone(),
        None => runner::schedule_for(seed, scenario),
    };
    let report = runner::run_with(seed, scenario, schedule, setup.bug, setup.tracing);
    let replay = replay(&report, setup.bug);
    let shrunk = (setup.shrink && !report.passed()).then(|| {
        let minimal = sim::faults::shrink_of(
            report.seed,
            runner::fault_set(report.seed, scenario),
            |s| {
                !runner::run_with(report.seed, scenario, s.clone(), setup.bug, Tracing::Off)
                    .passed()
            },
            64,
        );
        format!("{replay} --faults '{}'", minimal.describe())
    });
    let record = SeedRecord::of(&report, replay, shrunk);
    (record, report.trace)
}

/// The command that replays a seed (with its planted bug, if any).
fn replay(report: &SeedReport, bug: Option<Bug>) -> String {
    match bug {
        None => report.replay(),
        Some(b) => report.replay().replacen(
            " -- ",
            &format!(" --features compute_ctl/planted-bugs -- --plant {b:?} "),
            1,
        ),
    }
}

/// `--jobs 1`: every seed in this process, failures printed as they come.
fn in_process(
    args: &Args,
    setup: &Setup,
    first: u64,
    count: u64,
    progress: &mut Progress,
) -> anyhow::Result<Vec<SeedRecord>> {
    let mut trace = open_trace(args.trace.as_deref())?;
    let mut records = Vec::new();
    for seed in first..first + count {
        let (record, text) = run_seed(setup, seed);
        if let Some(w) = trace.as_mut() {
            w.write_all(text.as_bytes())
                .context("cannot write the trace")?;
        }
        progress.seed_done(record.passed());
        if args.verbose {
            println!("{}", verbose_line(&record));
        }
        if !record.passed() {
            println!("{}", record.failure_line());
        }
        records.push(record);
    }
    if let Some(mut w) = trace {
        w.flush().context("cannot write the trace")?;
    }
    Ok(records)
}

fn open_trace(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::io::BufWriter<std::fs::File>>> {
    path.map(|p| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("cannot create the trace file {}", p.display()))
    })
    .transpose()
}

/// A worker of `--jobs`: runs its seed range, one JSON record per line.
fn worker(args: &Args, setup: &Setup, first: u64, count: u64) -> anyhow::Result<()> {
    let mut trace = open_trace(args.trace.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for seed in first..first + count {
        let (record, text) = run_seed(setup, seed);
        if let Some(w) = trace.as_mut() {
            w.write_all(text.as_bytes())
                .context("cannot write the trace")?;
        }
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    if let Some(mut w) = trace {
        w.flush().context("cannot write the trace")?;
    }
    Ok(())
}

/// The trace part written by worker `k`.
fn part_path(trace: &std::path::Path, k: usize) -> std::path::PathBuf {
    let mut name = trace.as_os_str().to_owned();
    name.push(format!(".part{k}"));
    name.into()
}

/// `--jobs N`: this binary again as N workers over contiguous seed ranges;
/// records in seed order, trace parts concatenated in order.
fn with_workers(
    args: &Args,
    first: u64,
    count: u64,
    progress: &mut Progress,
) -> anyhow::Result<Vec<SeedRecord>> {
    let exe = std::env::current_exe().context("cannot find the sim binary to start workers")?;
    let parts = campaign::split(first, count, args.jobs);
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<SeedRecord>>();
    let mut children = Vec::new();
    for (k, (lo, n)) in parts.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--worker",
            "--first",
            &lo.to_string(),
            "--seeds",
            &n.to_string(),
        ]);
        for (flag, value) in [
            ("--scenario", args.scenario.as_deref()),
            ("--faults", args.faults.as_deref()),
            ("--plant", args.plant.as_deref()),
        ] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        if args.shrink {
            cmd.arg("--shrink");
        }
        if let Some(t) = &args.trace {
            cmd.arg("--trace").arg(part_path(t, k));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start worker {k} ({})", exe.display()))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let rec = line.context("reading a worker's output").and_then(|l| {
                    serde_json::from_str::<SeedRecord>(&l)
                        .with_context(|| format!("a worker printed {l:?}"))
                });
                if tx.send(rec).is_err() {
                    return;
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let mut records = std::collections::BTreeMap::new();
    for rec in rx {
        let rec = rec?;
        progress.seed_done(rec.passed());
        records.insert(rec.seed, rec);
    }
    for (k, mut c) in children.into_iter().enumerate() {
        let status = c.wait()?;
        if !status.success() {
            bail!("worker {k} failed ({status}); see its message above");
        }
    }
    if records.len() as u64 != count {
        bail!("the workers reported {} of {count} seeds", records.len());
    }
    if let Some(t) = &args.trace {
        let mut w = open_trace(Some(t))?.context("trace file")?;
        for k in 0..parts.len() {
            let p = part_path(t, k);
            let mut f = std::fs::File::open(&p)
                .with_context(|| format!("cannot read the trace part {}", p.display()))?;
            std::io::copy(&mut f, &mut w).context("cannot write the trace")?;
            let _ = std::fs::remove_file(&p);
        }
        w.flush().context("cannot write the trace")?;
    }
    Ok(records.into_values().collect())
}
