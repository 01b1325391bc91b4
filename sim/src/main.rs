//! `sim`: runs the deterministic simulation of compute_ctl.
//!
//! `sim [--seeds N] [--first S] [--seed S] [--scenario NAME] [--trace FILE] [--list]`
//! Default: 1,000 seeds, each running the scenario its number picks (seeds
//! go round the scenario list). Prints one line per failure with the
//! command that replays it, then `N passed, M failed`, seeds per second and
//! the simulated-to-real time ratio. Exits non-zero on any failure.
#![allow(clippy::disallowed_methods)] // wall-clock timing of the harness itself

use std::process::ExitCode;

/// The simulator allocates and frees small objects at a high rate (messages,
/// futures, statements): mimalloc is faster at that than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use compute_ctl::planted::Bug;
use sim::runner::{self, SeedReport, Tracing};
use sim::scenarios::{self, Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Deterministic simulation of compute_ctl under turmoil"
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
    /// Write the JSONL trace here (of every seed run, one after the other).
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
    /// DownscaleWithoutBuffer); needs a build with
    /// compute_ctl's `planted-bugs` feature (the sim's tests have it).
    #[arg(long)]
    plant: Option<String>,
    /// Print one line per seed (scenario, simulated time, verdict).
    #[arg(long)]
    verbose: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<ExitCode> {
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
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first..args.first + args.seeds).collect(),
    };
    let mut trace = match &args.trace {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create the trace file {}", path.display()))?,
        )),
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
    let tracing = if trace.is_some() {
        Tracing::On
    } else {
        Tracing::Off
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut simulated = Duration::ZERO;
    for seed in seeds {
        let scenario = only.unwrap_or_else(|| runner::scenario_for(seed));
        let schedule = match &faults {
            Some(s) => s.clone(),
            None => sim::faults::schedule(seed),
        };
        let report = runner::run_with(seed, scenario, schedule, bug, tracing);
        simulated += report.simulated;
        if args.verbose {
            println!(
                "seed {} {} {:.1}s {}",
                seed,
                report.scenario,
                report.simulated.as_secs_f64(),
                if report.passed() { "ok" } else { "FAIL" }
            );
        }
        if let Some(w) = trace.as_mut() {
            use std::io::Write;
            w.write_all(report.trace.as_bytes())
                .context("cannot write the trace")?;
        }
        if report.passed() {
            passed += 1;
        } else {
            failed += 1;
            print_failure(&report, args.shrink, bug);
        }
    }
    if let Some(mut w) = trace {
        use std::io::Write;
        w.flush().context("cannot write the trace")?;
    }
    let real = started.elapsed();
    let total = passed + failed;
    println!("{passed} passed, {failed} failed");
    println!(
        "{:.0} seeds/s, simulated/real time {:.0}x ({:.1} s simulated in {:.2} s)",
        total as f64 / real.as_secs_f64().max(1e-9),
        simulated.as_secs_f64() / real.as_secs_f64().max(1e-9),
        simulated.as_secs_f64(),
        real.as_secs_f64()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_failure(report: &SeedReport, shrink: bool, bug: Option<Bug>) {
    let planted = bug
        .map(|b| format!(" --features compute_ctl/planted-bugs -- --plant {b:?}"))
        .unwrap_or_default();
    let replay = if planted.is_empty() {
        report.replay()
    } else {
        report.replay().replacen(" -- ", &format!("{planted} "), 1)
    };
    println!(
        "FAIL seed {} scenario {}: {} | faults {} | replay: {}",
        report.seed,
        report.scenario,
        report.violations.first().map(String::as_str).unwrap_or(""),
        report.schedule.describe(),
        replay
    );
    if shrink {
        let scenario = scenarios::find(report.scenario).expect("the scenario just ran");
        let minimal = sim::faults::shrink(
            report.seed,
            |s| !runner::run_with(report.seed, scenario, s.clone(), bug, Tracing::Off).passed(),
            64,
        );
        println!("  shrunk: {replay} --faults '{}'", minimal.describe());
    }
}
