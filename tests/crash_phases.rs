//! Crash at every phase, on real Postgres (issue 15, item 1): `kill -9` of
//! the postmaster, and separately of compute_ctl itself, at random points of
//! the first start (PGDATA, config, Postgres start, catalog apply) and of a
//! reconfigure (config write, reload, catalog). Each trial must end in a
//! clear outcome (a killed postmaster: compute_ctl exits non-zero and says
//! why; a killed compute_ctl: its Postgres is not left in the way), and a
//! restart from the same spec must converge: running, the catalog as the
//! spec says, no process of the old run left, and a clean terminate.
//!
//! Trials per (target, stage): 2 by default (in `just test`), 20 with
//! `COMPUTE_CTL_CHAOS_SCALE=full` (`just chaos`). The kill points come from a
//! seeded RNG (`COMPUTE_CTL_CHAOS_SEED`, printed); with
//! `COMPUTE_CTL_CHAOS_REPORT=DIR` every trial is a line of
//! `DIR/crash_phases.jsonl`.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::compute::{Compute, ComputeOpts};
use support::os::alive;
use support::{md5_hex, wait_for};

/// Roles in the spec: enough that the catalog apply is a phase one can hit.
const ROLES: usize = 200;

fn trials() -> usize {
    if support::chaos::full() { 20 } else { 2 }
}

fn seed() -> u64 {
    std::env::var("COMPUTE_CTL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        })
}

/// A spec with [`ROLES`] md5 roles whose passwords carry `generation`.
fn spec(operation: &str, generation: u32) -> Value {
    let roles: Vec<Value> = (0..ROLES)
        .map(|i| {
            let name = format!("crash_role_{i}");
            json!({"name": name, "encrypted_password": md5_hex(&format!("pw{generation}"), &name)})
        })
        .collect();
    json!({
        "format_version": 1.0,
        "operation_uuid": operation,
        "cluster": {
            "roles": roles,
            "databases": [{"name": "crash_db", "owner": "crash_role_0"}],
            "settings": [{"name": "work_mem", "value": format!("{}kB", 4096 + generation), "vartype": "string"}],
        },
    })
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Postmaster,
    Supervisor,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Start,
    Reconfigure,
}

/// What the compute was doing when it was hit.
async fn phase(c: &Compute) -> String {
    let status = match c
        .client
        .get(c.url("/status"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
    {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string)),
        Err(_) => None,
    };
    let log = c.log();
    let step = if c.postmaster_pid().is_none() {
        "preparing PGDATA / config"
    } else if log.contains("Postgres is running") && !log.contains("spec accepted generation=2") {
        "running"
    } else if log.contains("PGDATA prepared") && !log.contains("Postgres is running") {
        "Postgres start / catalog apply"
    } else {
        "reconfigure"
    };
    format!("{} ({step})", status.unwrap_or_else(|| "no answer".into()))
}

/// The catalog is the spec's `generation`: every role, with its password.
async fn converged(c: &Compute, generation: u32) -> bool {
    let Ok(client) = c.connect().await else {
        return false;
    };
    let want = format!("md5{}", md5_hex(&format!("pw{generation}"), "crash_role_7"));
    let rows = client
        .query_one(
            "SELECT count(*) FILTER (WHERE rolname LIKE 'crash\\_role\\_%'), \
                    max(rolpassword) FILTER (WHERE rolname = 'crash_role_7') FROM pg_authid",
            &[],
        )
        .await;
    match rows {
        Ok(r) => {
            r.get::<_, i64>(0) == ROLES as i64
                && r.get::<_, Option<String>>(1).as_deref() == Some(want.as_str())
        }
        Err(_) => false,
    }
}

async fn trial(rng: &mut rand::rngs::SmallRng, target: Target, stage: Stage, n: usize) -> Value {
    let first = spec(&format!("crash-{n}-a"), 1);
    let mut c = Compute::start(ComputeOpts::with_spec(first));
    let goal = match stage {
        Stage::Start => {
            // Anywhere in the first start: initdb and the rest take ~1.5 s.
            let delay = rng.random_range(0..2_000u64);
            // Fault timing, not synchronisation: the point to hit is random.
            tokio::time::sleep(Duration::from_millis(delay)).await;
            1
        }
        Stage::Reconfigure => {
            c.wait_status("running", Duration::from_secs(60)).await;
            // In flight when the kill lands; its answer (if any) is not the point.
            let req = c
                .client
                .post(c.url("/configure"))
                .json(&json!({"spec": spec(&format!("crash-{n}-b"), 2)}));
            tokio::spawn(async move { req.send().await.map(|r| r.status()) });
            let delay = rng.random_range(0..400u64);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            2
        }
    };
    let hit_in = phase(&c).await;
    let old_postmaster = c.postmaster_pid();
    let outcome = match target {
        Target::Postmaster => {
            // Hit the postmaster as soon as there is one.
            let pm = wait_for(Duration::from_secs(60), "a postmaster to kill", || async {
                if let Some(exit) = c.try_exit() {
                    panic!(
                        "compute_ctl exited ({exit}) before its postmaster could be killed:\n{}",
                        c.log()
                    );
                }
                c.postmaster_pid()
            })
            .await;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pm),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            let exit = c.wait_exit(Duration::from_secs(60)).await;
            assert!(
                !exit.success(),
                "{target:?} killed in {hit_in}: compute_ctl exited 0\n{}",
                c.log()
            );
            let log = c.log();
            assert!(
                log.contains("compute failed:"),
                "{target:?} killed in {hit_in}: no reason given on exit\n{log}"
            );
            format!("exit {:?}, reason given", exit.code())
        }
        Target::Supervisor => {
            c.signal(nix::sys::signal::Signal::SIGKILL);
            let exit = c.wait_exit(Duration::from_secs(30)).await;
            format!("killed ({exit})")
        }
    };
    // Restart from the spec the compute was working on.
    let t0 = Instant::now();
    c.respawn(Some(spec(&format!("crash-{n}-r"), goal)));
    c.wait_status("running", Duration::from_secs(90)).await;
    wait_for(
        Duration::from_secs(30),
        "the catalog to match the spec",
        || async { converged(&c, goal).await.then_some(()) },
    )
    .await;
    let converge_ms = t0.elapsed().as_millis() as u64;
    if let Some(old) = old_postmaster {
        assert!(
            !alive(old) || Some(old) == c.postmaster_pid(),
            "the old postmaster {old} is still alive beside the new one"
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
    json!({"target": format!("{target:?}"), "stage": format!("{stage:?}"), "trial": n,
           "hit_in": hit_in, "outcome": outcome, "converged": true, "converge_ms": converge_ms,
           "orphans": 0, "lost_data": 0})
}

async fn campaign(target: Target, stage: Stage) {
    crate::need_postgres!();
    let seed = seed();
    eprintln!(
        "crash campaign {target:?}/{stage:?}: seed {seed} (COMPUTE_CTL_CHAOS_SEED={seed} replays it)"
    );
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ ((target as u64) << 8) ^ stage as u64);
    for n in 0..trials() {
        let line = trial(&mut rng, target, stage, n).await;
        eprintln!("{line}");
        support::chaos::report("crash_phases", &line);
    }
}

#[tokio::test]
async fn postmaster_killed_during_start() {
    campaign(Target::Postmaster, Stage::Start).await;
}

#[tokio::test]
async fn postmaster_killed_during_reconfigure() {
    campaign(Target::Postmaster, Stage::Reconfigure).await;
}

#[tokio::test]
async fn compute_ctl_killed_during_start() {
    campaign(Target::Supervisor, Stage::Start).await;
}

#[tokio::test]
async fn compute_ctl_killed_during_reconfigure() {
    campaign(Target::Supervisor, Stage::Reconfigure).await;
}
