//! `just bench`: every figure compute_ctl competes on, each as a ratio to a
//! floor measured in the same run on this machine (real Postgres 15).
//!
//! Run by `cargo bench --bench compete` (full sizes, ≥5 repetitions, results
//! in target/bench/results.json). Under `cargo test` (no `--bench` argument)
//! it runs a smoke pass with tiny sizes so the harness itself stays working.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a benchmark measures real time

mod alloc;
mod cases;
mod compute;
mod durable;
mod durable_floor;
mod memory;
mod neighbour;
mod plot;
/// The tests' port allocator: one range, outside the ephemeral ports.
#[path = "../../tests/it/support/ports.rs"]
mod ports;
mod postgres;
mod prefix;
mod request_path;
mod specs;
mod stages;
mod stats;
mod storage;
mod throughput;
mod tracing_cost;

/// Counts allocations, for the request-path suite's allocations per role.
#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

use std::path::Path;

use stats::CaseResult;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(neighbour::ARG) {
        return neighbour::main(&args[2..]);
    }
    let full = std::env::args().any(|a| a == "--bench");
    if !full && std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test -- --list`
    }
    let mut plan = if full {
        cases::Plan::full()
    } else {
        cases::Plan::smoke()
    };
    // `COMPETE_NOTIFY_ROLES=10,5000`: bounded notify sizes while iterating
    // (the first is the small one; `big_roles` must be among them for the
    // size ratio).
    if let Ok(list) = std::env::var("COMPETE_NOTIFY_ROLES") {
        let roles: Vec<usize> = list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("COMPETE_NOTIFY_ROLES={list}: {e}"))?;
        anyhow::ensure!(!roles.is_empty(), "COMPETE_NOTIFY_ROLES is empty");
        plan.notify_roles = Vec::leak(roles);
    }
    // `COMPETE_NOTIFY_REPS=200`: more paired repetitions per notify size
    // (each one notify of ours and one by-hand reload) than the plan's 21,
    // for comparisons finer than the run-to-run spread.
    if let Ok(n) = std::env::var("COMPETE_NOTIFY_REPS") {
        plan.notify_reps = n
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("COMPETE_NOTIFY_REPS={n}: {e}"))?;
        anyhow::ensure!(
            plan.notify_reps > 0,
            "COMPETE_NOTIFY_REPS must be at least 1"
        );
    }
    if !Path::new(postgres::PGBIN).join("postgres").exists() {
        anyhow::bail!(
            "PostgreSQL 15 binaries not found in {}; run `just deps`",
            postgres::PGBIN
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(run(plan, full))?;
    print_table(&results);
    if full {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("results.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
        println!("\nwritten: {}", path.display());
        if results.iter().any(|r| r.suite == "notify_reconfigure") {
            let svg = dir.join("notify_cost.svg");
            plot::notify_cost(&results, &svg)?;
            println!("written: {}", svg.display());
        }
    } else {
        smoke_checks(&results)?;
        // The plot is drawn in the smoke pass too (into a temporary file),
        // so that a broken plot shows up in `just test`.
        if selected("notify_reconfigure") {
            let svg =
                std::env::temp_dir().join(format!("compete-smoke-{}.svg", std::process::id()));
            plot::notify_cost(&results, &svg)?;
            let text = std::fs::read_to_string(&svg)?;
            let _ = std::fs::remove_file(&svg);
            anyhow::ensure!(
                text.contains("<svg") && text.contains("roles"),
                "the plot is not an SVG with its axis label"
            );
        }
        println!("bench smoke: 1 passed, 0 failed");
    }
    Ok(())
}

/// Whether `suite` runs: all of them, unless `COMPETE_ONLY` lists some
/// (comma-separated), for working on one suite.
fn selected(suite: &str) -> bool {
    match std::env::var("COMPETE_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|s| s.trim() == suite),
        _ => true,
    }
}

async fn run(plan: cases::Plan, full: bool) -> anyhow::Result<Vec<CaseResult>> {
    let mut all = Vec::new();
    if selected("request_path") {
        all.extend(request_path::request_path(plan).await?);
    }
    if selected("notify_reconfigure") {
        all.extend(cases::notify_reconfigure(plan).await?);
    }
    if selected("full_reconfigure_noop") {
        all.extend(cases::full_reconfigure_noop(plan).await?);
    }
    if selected("first_apply") {
        all.extend(cases::first_apply(plan).await?);
    }
    if selected("cold_start") {
        all.extend(cases::cold_start(plan).await?);
    }
    if selected("status_under_load") {
        all.extend(cases::status_under_load(plan).await?);
    }
    if selected("storage") {
        all.extend(storage::storage(plan).await?);
    }
    if selected("memory") {
        all.extend(memory::memory(plan).await?);
    }
    // `durable` writes the rows durable_start, durable_commit, durable_move.
    if selected("durable") {
        all.extend(durable::durable(plan).await?);
    }
    if selected("tracing_cost") {
        all.extend(tracing_cost::tracing_cost(plan).await?);
    }
    if full && selected("sim_throughput") {
        all.extend(throughput::sim_throughput()?);
    }
    Ok(all)
}

/// What the smoke pass asserts: every suite produced numbers, and the
/// behavioural facts the figures rest on hold.
fn smoke_checks(results: &[CaseResult]) -> anyhow::Result<()> {
    for suite in [
        "request_path",
        "notify_stages",
        "notify_reconfigure",
        "notify_neighbour",
        "prefix_headline",
        "memory",
        "full_reconfigure_noop",
        "first_apply",
        "cold_start",
        "status_under_load",
        "storage",
        "durable_start",
        "durable_commit",
        "durable_move",
        "tracing_cost",
    ] {
        let runs = if suite.starts_with("durable_") {
            selected("durable")
        } else if suite == "prefix_headline" || suite == "notify_neighbour" {
            selected("notify_reconfigure")
        } else if suite == "notify_stages" {
            selected("request_path")
        } else {
            selected(suite)
        };
        if !runs {
            continue;
        }
        let rows: Vec<_> = results.iter().filter(|r| r.suite == suite).collect();
        anyhow::ensure!(!rows.is_empty(), "suite {suite} produced no result");
        for r in rows {
            anyhow::ensure!(
                r.ours.median_ms.is_finite() && r.ours.median_ms > 0.0,
                "{suite}: no measurement"
            );
        }
    }
    if let Some(noop) = results.iter().find(|r| r.suite == "full_reconfigure_noop") {
        anyhow::ensure!(
            noop.extra["zero_writes"] == true,
            "a no-op full reconfigure wrote: {}",
            noop.extra
        );
    }
    if let Some(moved) = results
        .iter()
        .find(|r| r.suite == "storage" && r.case.starts_with("notify"))
    {
        anyhow::ensure!(
            moved.extra["postmaster_restarts"] == 0,
            "a move restarted Postgres: {}",
            moved.extra
        );
    }
    if let Some(moved) = results.iter().find(|r| r.suite == "durable_move") {
        anyhow::ensure!(
            moved.extra["postmaster_restarts"] == 0,
            "a safekeeper move restarted Postgres: {}",
            moved.extra
        );
    }
    if let Some(t) = results.iter().find(|r| r.suite == "tracing_cost") {
        anyhow::ensure!(
            t.extra["otlp_posts_received"].as_u64() > Some(0),
            "the exporting compute exported nothing: {}",
            t.extra
        );
    }
    Ok(())
}

fn print_table(results: &[CaseResult]) {
    println!(
        "\n{:<24} {:<26} {:>11} {:>9} {:>11} {:>7}  {:<24} met",
        "suite", "case", "median ms", "min ms", "floor ms", "ratio", "target"
    );
    for r in results {
        let floor = r
            .floor
            .map(|f| format!("{:.2}", f.median_ms))
            .unwrap_or_else(|| "-".into());
        let ratio = r
            .ratio
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into());
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "{:<24} {:<26} {:>11.2} {:>9.2} {:>11} {:>7}  {:<24} {met}",
            r.suite, r.case, r.ours.median_ms, r.ours.min_ms, floor, ratio, r.target
        );
        if !r.extra.is_null() {
            println!("{:<24} {}", "", r.extra);
        }
    }
}
