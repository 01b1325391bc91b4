//! What the reliability suites (`crash_phases`, `hostile_http`, `fuzz`,
//! `soak`) share: their size (`COMPUTE_CTL_CHAOS_SCALE=full` from `just
//! chaos`, a smoke size otherwise) and their report lines
//! (`COMPUTE_CTL_CHAOS_REPORT=DIR`: one JSON line per case in
//! `DIR/<suite>.jsonl`, read by `scripts/chaos-report.py`).

use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde_json::Value;

/// Whether `just chaos` asked for the full sizes.
pub fn full() -> bool {
    std::env::var("COMPUTE_CTL_CHAOS_SCALE").as_deref() == Ok("full")
}

/// The seed of a campaign's random fault points: `COMPUTE_CTL_CHAOS_SEED`
/// (to replay a run; the suites print theirs), else the clock's seconds.
pub fn seed() -> u64 {
    std::env::var("COMPUTE_CTL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_secs()
        })
}

/// Appends `line` to `DIR/<suite>.jsonl` when a report is asked for.
pub fn report(suite: &str, line: &Value) {
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

/// Runs one trial of a fault and reports it as a row of `suite`, computed
/// from what the trial measured: `identity` names the trial (fault, target,
/// phase, ...), `body` returns the measured fields (`converged`,
/// `lost_data`, `orphans`, anything else) or `None` when the fault found
/// nothing to hit (no row, no trial). The row's `survived` is derived here:
/// converged, no lost data, no orphans. A trial that panics (an assertion
/// inside it) or did not survive is reported as a failed row
/// (`"survived": false`, its reason in `failed`) and then fails the test.
pub async fn trial<F>(suite: &str, identity: Value, body: F) -> Option<Value>
where
    F: Future<Output = Option<Value>>,
{
    let mut row = identity;
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let measured = match outcome {
        Ok(None) => return None,
        Ok(Some(m)) => m,
        Err(panic) => {
            row["converged"] = false.into();
            row["survived"] = false.into();
            row["failed"] = panic_message(&*panic).into();
            eprintln!("{row}");
            report(suite, &row);
            std::panic::resume_unwind(panic);
        }
    };
    for (k, v) in measured
        .as_object()
        .expect("a trial measures a JSON object")
    {
        row[k] = v.clone();
    }
    let converged = row["converged"] == true;
    let lost = row["lost_data"].as_i64();
    let orphans = row.get("orphans").map_or(Some(0), Value::as_u64);
    let survived = converged && lost == Some(0) && orphans == Some(0);
    row["survived"] = survived.into();
    if !survived {
        row["failed"] = format!(
            "converged {converged}, lost data {lost:?}, orphans {orphans:?} (want true, 0, 0)"
        )
        .into();
    }
    eprintln!("{row}");
    report(suite, &row);
    assert!(survived, "{suite}: the trial did not survive: {row}");
    Some(row)
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Measures the data a compute lost until it is 0 or `within` passes:
/// the last measurement (`None`: nothing could be measured), so that lost
/// data shows in the report instead of ending in a timeout.
pub async fn settle<F, Fut>(within: Duration, mut measure: F) -> Option<i64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<i64>>,
{
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some(l) = measure().await {
            last = Some(l);
            if l == 0 {
                return last;
            }
        }
        if Instant::now() >= deadline {
            return last;
        }
        // The polling interval of a condition with a deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
