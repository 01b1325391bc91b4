//! Soak (issue 15, item 6): notifies and full reconfigures back to back while
//! clients query Postgres. Over the run compute_ctl's resident memory, open
//! file descriptors and live async tasks must stay flat, the notify latency
//! must not degrade, and no supervisor session may leak.
//!
//! Sizes: 300 notifies + 30 full reconfigures by default (`just test`);
//! 10,000 + 1,000 with `COMPUTE_CTL_CHAOS_SCALE=full` (`just chaos`), where
//! the samples go to `COMPUTE_CTL_CHAOS_REPORT/soak.jsonl` (the report plots
//! RSS and p99 over the run).
#![allow(clippy::disallowed_methods)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::md5_hex;
use serde_json::{Value, json};

const ROLES: usize = 100;
/// RSS growth allowed from the middle to the last third of the soak
/// whatever its size (allocator arenas; 56 KiB seen at smoke size).
const RSS_SLACK_KIB: u64 = 512;
/// RSS growth allowed per request of a third of the soak.
const RSS_PER_REQUEST_KIB: u64 = 1;
/// compute_ctl's CPU time per request late in the run may be 1.5x the one
/// in its middle, plus this (in clock ticks of the whole third: the
/// kernel counts CPU time in ticks of 10 ms).
const CPU_SLACK_TICKS: u64 = 5;
/// The notify median (wall time) late in the run may be 3x the one in its
/// middle, plus this: other tests share the machine, so wall time is only
/// a coarse guard; CPU time is the bound.
const MEDIAN_SLACK_US: u64 = 20_000;

fn sizes() -> (usize, usize) {
    if support::chaos::full() {
        (10_000, 1_000)
    } else {
        (300, 30)
    }
}

fn spec(op: &str, skip: bool, work_mem_kb: usize, password_generation: usize) -> Value {
    let roles: Vec<Value> = (0..ROLES)
        .map(|i| {
            let name = format!("soak_role_{i}");
            let pw = if i == 0 {
                format!("pw{password_generation}")
            } else {
                "pw".into()
            };
            json!({"name": name, "encrypted_password": md5_hex(&pw, &name)})
        })
        .collect();
    json!({
        "format_version": 1.0,
        "operation_uuid": op,
        "skip_pg_catalog_updates": skip,
        "cluster": {
            "roles": roles,
            "databases": [{"name": "soak_db", "owner": "soak_role_1"}],
            "settings": [{"name": "work_mem", "value": format!("{work_mem_kb}kB"), "vartype": "string"}],
        },
    })
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    request: usize,
    rss_kib: u64,
    fds: usize,
    tasks: i64,
    supervisor_sessions: i64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// compute_ctl's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (which may hold spaces): state is field 3,
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

async fn sample(c: &Compute, admin: &tokio_postgres::Client, request: usize) -> Sample {
    let metrics = c
        .client
        .get(c.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tasks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("compute_ctl_runtime_alive_tasks "))
        .and_then(|v| v.trim().parse().ok())
        .expect("compute_ctl_runtime_alive_tasks in /metrics");
    let supervisor_sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&compute_ctl::pg::APPLICATION_NAME],
        )
        .await
        .unwrap()
        .get(0);
    Sample {
        request,
        rss_kib: rss_kib(c.pid),
        fds: fds(c.pid),
        tasks,
        supervisor_sessions,
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn p99(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test]
async fn notifies_and_reconfigures_under_client_load_stay_flat() {
    crate::need_postgres!();
    let (notifies, reconfigures) = sizes();
    let c = Compute::serving(ComputeOpts::with_spec(spec("soak-0", false, 4096, 0))).await;
    c.wait_running().await;
    let admin = c.sql("postgres", "soak-observer").await;

    // Client load: two sessions querying the catalog until the soak ends.
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..2 {
        let client = c.sql("soak_db", "soak-load").await;
        let (stop, queries) = (stop.clone(), queries.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client
                    .simple_query("SELECT count(*) FROM pg_class")
                    .await
                    .unwrap();
                queries.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let every = (notifies + reconfigures) / 20;
    let full_every = notifies / reconfigures;
    let mut notify_us: Vec<u64> = Vec::with_capacity(notifies);
    let mut reconfigure_us = Vec::with_capacity(reconfigures);
    let mut answered_200 = 0;
    let mut samples = Vec::new();
    let t0 = Instant::now();
    let total = notifies + reconfigures;
    let mut full_done = 0;
    // CPU ticks at the start of the middle and last thirds and at the end.
    let mut cpu_at = Vec::with_capacity(3);
    for i in 1..=total {
        if i == total / 3 + 1 || i == 2 * total / 3 + 1 {
            cpu_at.push(cpu_ticks(c.pid));
        }
        let full = i % (full_every + 1) == 0 && full_done < reconfigures;
        let s = if full {
            full_done += 1;
            spec(&format!("soak-{i}"), false, 4096, full_done)
        } else {
            spec(&format!("soak-{i}"), true, 4096 + i % 64, full_done)
        };
        let t = Instant::now();
        let r = c.configure(&s, None).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        answered_200 += 1;
        let us = t.elapsed().as_micros() as u64;
        if full {
            reconfigure_us.push(us);
        } else {
            notify_us.push(us);
        }
        if i % every == 0 {
            samples.push(sample(&c, &admin, i).await);
        }
    }
    cpu_at.push(cpu_ticks(c.pid));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let elapsed = t0.elapsed();

    // Flatness: the last third of the run against the middle third (the
    // first third is warm-up: allocator arenas, connection pools, caches).
    let third = samples.len() / 3;
    let (mid, last) = (&samples[third..2 * third], &samples[2 * third..]);
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap();
    let rss_mid = max(mid, |s| s.rss_kib);
    let rss_last = max(last, |s| s.rss_kib);
    // A leak per request shows at smoke size too: at most 5% and at most
    // RSS_SLACK_KIB + RSS_PER_REQUEST_KIB per request of a third (110 at
    // smoke size: a leaked spec, about 10 KiB, per request breaks it).
    let third_kib = RSS_PER_REQUEST_KIB * (total / 3) as u64;
    let rss_bound_kib = (rss_mid + RSS_SLACK_KIB + third_kib).min(rss_mid + rss_mid / 20);
    assert!(
        rss_last <= rss_bound_kib,
        "RSS grew from {rss_mid} KiB to {rss_last} KiB over the soak (bound {rss_bound_kib} KiB): {samples:?}"
    );
    let fds_mid = max(mid, |s| s.fds as u64);
    let fds_last = max(last, |s| s.fds as u64);
    assert!(
        fds_last <= fds_mid + 2,
        "open FDs grew from {fds_mid} to {fds_last}: {samples:?}"
    );
    let tasks_mid = max(mid, |s| s.tasks as u64);
    let tasks_last = max(last, |s| s.tasks as u64);
    assert!(
        tasks_last <= tasks_mid + 2,
        "live tasks grew from {tasks_mid} to {tasks_last}: {samples:?}"
    );
    let sessions_last = max(last, |s| s.supervisor_sessions as u64);
    // At most two at a time, neither kept: a notify's pg_file_settings
    // check (issue 24) and an activity-monitor sample. pg_stat_activity also
    // lists a backend whose client has closed until its process has exited,
    // which under a loaded machine lags (3 seen in a full `just test`): two
    // such on top. A leak grows past it: one session kept per reconfigure is
    // 20 by the last third even at smoke size (30 reconfigures).
    assert!(sessions_last <= 4, "supervisor sessions leak: {samples:?}");
    // Latency: a request late in the run costs what one in its middle did.
    // A cost that grows with the number of requests (a leak, a growing
    // list) breaks the CPU bound below at smoke size; the wall-time median
    // is a coarse guard (other tests share the machine), the p99 reported.
    let n3 = notify_us.len() / 3;
    let median_mid_us = median(&mut notify_us[n3..2 * n3].to_vec());
    let median_last_us = median(&mut notify_us[2 * n3..].to_vec());
    let median_bound_us = median_mid_us * 3 + MEDIAN_SLACK_US;
    assert!(
        median_last_us <= median_bound_us,
        "the notify median degraded from {median_mid_us} us to {median_last_us} us (bound {median_bound_us} us)"
    );
    // CPU: what compute_ctl burns on a third of the requests, late against
    // middle (the same mix of notifies and reconfigures, the same client load).
    let (cpu_mid_ticks, cpu_last_ticks) = (cpu_at[1] - cpu_at[0], cpu_at[2] - cpu_at[1]);
    let cpu_bound_ticks = cpu_mid_ticks * 3 / 2 + CPU_SLACK_TICKS;
    assert!(
        cpu_last_ticks <= cpu_bound_ticks,
        "compute_ctl's CPU time per third of the soak grew from {cpu_mid_ticks} to {cpu_last_ticks} ticks (bound {cpu_bound_ticks})"
    );
    let p99_mid = p99(&mut notify_us[n3..2 * n3].to_vec());
    let p99_last = p99(&mut notify_us[2 * n3..].to_vec());
    let line = json!({
        "suite": "soak", "notifies": notifies, "reconfigures": reconfigures,
        "elapsed_s": elapsed.as_secs_f64(), "client_queries": queries.load(Ordering::Relaxed),
        "answered_200": answered_200, "notify_p99_us": p99(&mut notify_us.clone()),
        "notify_median_mid_us": median_mid_us, "notify_median_last_us": median_last_us,
        "cpu_mid_ticks": cpu_mid_ticks, "cpu_last_ticks": cpu_last_ticks, "notify_p99_mid_us": p99_mid, "notify_p99_last_us": p99_last,
        "reconfigure_p99_us": p99(&mut reconfigure_us.clone()),
        "rss_mid_kib": rss_mid, "rss_last_kib": rss_last, "fds_mid": fds_mid, "fds_last": fds_last,
        "tasks_mid": tasks_mid, "tasks_last": tasks_last,
        "samples": samples.iter().map(|s| json!({"request": s.request, "rss_kib": s.rss_kib, "fds": s.fds, "tasks": s.tasks, "supervisor_sessions": s.supervisor_sessions})).collect::<Vec<_>>(),
        "notify_us": notify_us,
    });
    eprintln!(
        "soak: {notifies} notifies + {reconfigures} reconfigures in {elapsed:?}; RSS {rss_mid} -> {rss_last} KiB, FDs {fds_mid} -> {fds_last}, tasks {tasks_mid} -> {tasks_last}, CPU {cpu_mid_ticks} -> {cpu_last_ticks} ticks per third, notify median {median_mid_us} -> {median_last_us} us, p99 {p99_mid} -> {p99_last} us"
    );
    support::chaos::report("soak", &line);
}
