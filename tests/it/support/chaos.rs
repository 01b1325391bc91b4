//! What the reliability suites (`crash_phases`, `hostile_http`, `fuzz`,
//! `soak`) share: their size (`COMPUTE_CTL_CHAOS_SCALE=full` from `just
//! chaos`, a smoke size otherwise) and their report lines
//! (`COMPUTE_CTL_CHAOS_REPORT=DIR`: one JSON line per case in
//! `DIR/<suite>.jsonl`, read by `scripts/chaos-report.py`).

use std::io::Write as _;

/// Whether `just chaos` asked for the full sizes.
pub fn full() -> bool {
    std::env::var("COMPUTE_CTL_CHAOS_SCALE").as_deref() == Ok("full")
}

/// Appends `line` to `DIR/<suite>.jsonl` when a report is asked for.
pub fn report(suite: &str, line: &serde_json::Value) {
    let Ok(dir) = std::env::var("COMPUTE_CTL_CHAOS_REPORT") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("create the chaos report directory");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/{suite}.jsonl"))
        .expect("open the chaos report");
    writeln!(f, "{line}").expect("write the chaos report");
}
