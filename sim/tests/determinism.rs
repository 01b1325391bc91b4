//! Same seed, same run: what can make two runs of one seed differ, each
//! ruled out by a test.
//!
//! - tokio's own randomness. A `tokio::sync::watch` receiver waits on one
//!   of 8 `Notify`s picked with the runtime's RNG, and a send wakes them
//!   shard by shard: the order in which the waiters of one channel run
//!   (the supervisor's state channel has many) is a draw. So is the branch
//!   an unbiased `tokio::select!` polls first. turmoil seeds each host's
//!   runtime from the simulation's seed only when tokio is built with
//!   `--cfg tokio_unstable` (`.cargo/config.toml`; the sim refuses to build
//!   without it); otherwise every runtime draws a seed from the OS.
//! - `tokio::select!` without `biased;` in the supervisor and the sim: even
//!   seeded, a random poll order is not the code's order, so none is allowed.
//! - A replica asking its source (`--max-ready-lag`): seed 24 of
//!   `replica_move_under_load`, which gave another trace in 6 of 20
//!   processes, replays identically.

#![allow(clippy::disallowed_methods)] // tokio's sleep inside a bare turmoil host

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The layering checks' source reader (its file walk is what this uses).
#[allow(dead_code)]
#[path = "../../src/layering/scan.rs"]
mod scan;

use scan::rust_files;

use sim::runner;
use sim::scenarios::{self, Scenario, Topology};

/// What tokio draws from the RNG of a host's runtime in one simulation of
/// `seed`: the branches 32 unbiased `select!`s pick among 8 ready ones,
/// then the order in which 16 waiters of one watch channel wake.
fn tokio_draws(seed: u64) -> Vec<usize> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut sim = turmoil::Builder::new().rng_seed(seed).build();
    let rec = out.clone();
    sim.client("draws", async move {
        for _ in 0..32 {
            let pick = tokio::select! {
                () = std::future::ready(()) => 0,
                () = std::future::ready(()) => 1,
                () = std::future::ready(()) => 2,
                () = std::future::ready(()) => 3,
                () = std::future::ready(()) => 4,
                () = std::future::ready(()) => 5,
                () = std::future::ready(()) => 6,
                () = std::future::ready(()) => 7,
            };
            rec.lock().unwrap().push(pick);
        }
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        let mut waiters = Vec::new();
        for i in 0..16 {
            let mut rx = rx.clone();
            let rec = rec.clone();
            waiters.push(tokio::spawn(async move {
                let _ = rx.changed().await;
                rec.lock().unwrap().push(100 + i);
            }));
        }
        // Every waiter is registered once the host has been idle.
        tokio::time::sleep(Duration::from_millis(1)).await;
        tx.send(1)?;
        for w in waiters {
            w.await?;
        }
        Ok(())
    });
    sim.run().expect("the draws run");
    let draws = out.lock().unwrap().clone();
    assert_eq!(draws.len(), 32 + 16);
    draws
}

#[test]
fn tokio_draws_in_a_host_follow_the_seed() {
    let a = tokio_draws(24);
    assert_eq!(
        a,
        tokio_draws(24),
        "tokio's RNG in a turmoil host is not seeded by the simulation \
         (is the build missing `--cfg tokio_unstable`? see .cargo/config.toml)"
    );
    assert_ne!(a, tokio_draws(25), "the draws depend on the seed");
}

/// `replica_move_under_load`, its compute started with `--max-ready-lag`:
/// the replica asks its source at every sample.
fn lag_limited(seed: u64) -> Topology {
    let base = scenarios::find("replica_move_under_load").expect("listed");
    Topology {
        max_ready_lag: Some(compute_ctl::params::MaxLag::Bytes(1 << 30)),
        ..(base.topology)(seed)
    }
}

#[test]
fn a_replica_asking_its_source_replays_to_the_same_trace() {
    let base = scenarios::find("replica_move_under_load").expect("listed");
    let scenario: &'static Scenario = Box::leak(Box::new(Scenario {
        name: base.name,
        about: base.about,
        run: base.run,
        topology: lag_limited,
    }));
    // Seed 24 differed in 6 of 20 processes: every runtime drew a fresh
    // seed from the OS, in one process as much as in several.
    let first = runner::run(24, scenario);
    assert!(first.passed(), "{:?}", first.violations);
    // The source's sessions are not traced, but asking it delays the
    // replica's own replication reads, which are.
    assert_ne!(
        first.trace,
        runner::run(24, base).trace,
        "under --max-ready-lag the replica asks its source"
    );
    // The same in every process (`--nocapture` shows it).
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&first.trace, &mut h);
    println!(
        "seed 24 under --max-ready-lag: {} trace lines, hash {:016x}",
        first.trace.lines().count(),
        std::hash::Hasher::finish(&h)
    );
    for run in 1..8 {
        let again = runner::run(24, scenario).trace;
        if again != first.trace {
            let line = first
                .trace
                .lines()
                .zip(again.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "run {run} differs from the first at trace line {line}:\n  {}\n  {}",
                first.trace.lines().nth(line).unwrap_or(""),
                again.lines().nth(line).unwrap_or("")
            );
        }
    }
}

/// `(line, text)` of every `select!` in `code` whose first token is not
/// `biased;` (comment lines skipped; `select_biased!` and `select_all` are
/// other names).
fn unbiased_selects(code: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let text = line.trim_start();
        if text.starts_with("//") {
            continue;
        }
        let Some(at) = text.find("select!") else {
            continue;
        };
        // `select!` as a name of its own (`tokio::select!`, `select!`).
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        // The first token after the opening brace, on this line or a later one.
        let after = &text[at + "select!".len()..];
        let rest = after
            .trim_start()
            .strip_prefix(['{', '('])
            .unwrap_or(after)
            .to_string();
        let first = std::iter::once(rest.as_str())
            .chain(lines[i + 1..].iter().copied())
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .unwrap_or("");
        if !first.starts_with("biased;") {
            out.push((i + 1, text.to_string()));
        }
    }
    out
}

#[test]
fn every_select_in_the_supervisor_and_the_sim_is_biased() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "../src", "../tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let this = Path::new(file!()).file_name().expect("a file name");
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in files {
        if file.file_name() == Some(this) {
            continue; // the draws above are unbiased on purpose
        }
        let code = std::fs::read_to_string(&file).expect("read a source file");
        seen += code.matches("select!").count();
        for (line, text) in unbiased_selects(&code) {
            wrong.push(format!("{}:{line}: {text}", file.display()));
        }
    }
    assert!(seen > 10, "the scan finds the selects ({seen})");
    assert!(
        wrong.is_empty(),
        "tokio::select! without `biased;` (its poll order is a random draw, not the code's):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_unbiased_selects() {
    let code = "let a = tokio::select! {\n    biased;\n    x = f() => x,\n};\n\
                tokio::select! {\n    // a comment\n    x = f() => x,\n}\n\
                tokio::select! { biased; x = f() => x }\n\
                futures::select_biased! { x = f() => x }\n\
                // tokio::select! { x = f() => x }\n\
                my_select!(x)\n";
    let found: Vec<usize> = unbiased_selects(code).into_iter().map(|(l, _)| l).collect();
    assert_eq!(found, [5]);
}
