//! Simulator throughput: seeds per second, from the sim binary's own summary.

use std::process::Command;

use anyhow::{Context, bail};

use crate::stats::{CaseResult, Summary};

fn sim_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/sim")
}

/// Runs the sim with `args` and returns seeds/s parsed from its summary line.
fn seeds_per_second(args: &[&str]) -> anyhow::Result<(f64, String)> {
    let bin = sim_binary();
    let out = Command::new(&bin).args(args).output().with_context(|| {
        format!(
            "running {} (build it with `cargo build -p sim --release`)",
            bin.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "sim {args:?} failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rate = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1].starts_with("seeds/s"))
        .and_then(|w| w[0].parse::<f64>().ok())
        .with_context(|| format!("no `N seeds/s` in the sim's output:\n{text}"))?;
    Ok((rate, text.lines().last().unwrap_or_default().to_string()))
}

pub fn sim_throughput() -> anyhow::Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for (case, args, min_rate) in [
        (
            "notify scenario, 2,000 seeds",
            vec!["--seeds", "2000", "--scenario", "notify_after_migration"],
            500.0,
        ),
        (
            "notify scenario, 4,000 seeds, --jobs 2",
            vec![
                "--seeds",
                "4000",
                "--scenario",
                "notify_after_migration",
                "--jobs",
                "2",
            ],
            1000.0,
        ),
        (
            "all scenarios, 1,000 seeds",
            vec!["--seeds", "1000"],
            1000.0 / 60.0,
        ),
    ] {
        let (rate, summary) = seeds_per_second(&args)?;
        let mut r = CaseResult::new("sim_throughput", case, Summary::of(&[1000.0 / rate]), None)
            .with_extra(serde_json::json!({"seeds_per_s": rate, "summary": summary}));
        r.target = if min_rate >= 1000.0 {
            ">= 1,000 seeds/s"
        } else if min_rate >= 500.0 {
            ">= 500 seeds/s"
        } else {
            "1,000 seeds < 60 s"
        };
        r.met = Some(rate >= min_rate);
        out.push(r);
    }
    Ok(out)
}
