//! Memory: the RSS of compute_ctl idle, with a big spec applied, and over
//! many notifies of that spec. It must not grow with the number of notifies.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;

use crate::cases::{Plan, running};
use crate::compute::Compute;
use crate::specs;
use crate::stats::{CaseResult, Summary};

/// A fixed-width marker in the notify body, overwritten with a counter so
/// that every notify is new (operation and storage address) without
/// serialising a 500 KB body each time.
const MARK: &[u8] = b"SEQ0000000000000";

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

fn stamp(template: &[u8], offsets: &[usize], n: u64) -> Vec<u8> {
    let mut body = template.to_vec();
    let digits = format!("SEQ{n:013}");
    for &o in offsets {
        body[o..o + MARK.len()].copy_from_slice(digits.as_bytes());
    }
    body
}

pub async fn memory(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let idle_spec = specs::sized(0, 0, 0, "memory-idle");
    let c = running(&idle_spec)
        .await
        .context("memory: starting compute_ctl")?;
    let pid = c.pid();
    let idle = rss_kib(pid)?;

    let big = specs::sized(plan.big_roles, plan.dbs, 0, "memory-big");
    let (code, body) = c.configure(&big).await?;
    if code != 200 {
        bail!("memory: big spec answered {code}: {body}");
    }
    let applied = rss_kib(pid)?;

    let mut notify = specs::notify(&big, "memory-notify-SEQ0000000000000", "4MB");
    notify["pageserver_connstring"] =
        json!("host=127.0.0.1 port=6400 application_name=SEQ0000000000000");
    let template = Compute::configure_body(&notify)?;
    let offsets: Vec<usize> = template
        .windows(MARK.len())
        .enumerate()
        .filter(|(_, w)| *w == MARK)
        .map(|(i, _)| i)
        .collect();
    anyhow::ensure!(offsets.len() == 2, "marker not found in the notify body");

    let every = (plan.mem_notifies / 10).max(1);
    let mut samples = vec![json!({"notifies": 0, "rss_kib": applied})];
    let mut lat = Vec::new();
    for n in 1..=plan.mem_notifies {
        let body = stamp(&template, &offsets, n as u64);
        let t = Instant::now();
        let (code, answer) = c.configure_raw(body).await?;
        if code != 200 {
            bail!("memory: notify {n} answered {code}: {answer}");
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if n % every == 0 {
            samples.push(json!({"notifies": n, "rss_kib": rss_kib(pid)?}));
        }
    }
    let m = c.get("/metrics.json").await?;
    if m["last_reconfigure"]["catalog_statements"].as_u64() != Some(0) {
        bail!("memory: a notify ran catalog statements: {m}");
    }
    let at = |i: usize| samples[i]["rss_kib"].as_u64().unwrap_or(0);
    // Growth from the first tenth to the end: warm-up (allocator arenas,
    // connection buffers) is over by then.
    let first_tenth = at(1.min(samples.len() - 1));
    let last = at(samples.len() - 1);
    let growth = last as f64 / first_tenth.max(1) as f64;
    let mut r = CaseResult::new(
        "memory",
        format!("{} notifies of {} roles", plan.mem_notifies, plan.big_roles),
        Summary::of(&lat),
        None,
    )
    .with_extra(json!({
        "rss_idle_kib": idle,
        "rss_spec_applied_kib": applied,
        "rss_after_notifies_kib": last,
        "growth_after_first_tenth": growth,
        "samples": samples,
    }));
    r.target = "RSS flat: end <= 1.05x first tenth";
    r.met = Some(growth <= 1.05);
    Ok(vec![r])
}
