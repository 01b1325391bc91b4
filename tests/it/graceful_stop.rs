//! Graceful stop under load (issue 15, item 7): SIGTERM to compute_ctl in
//! the middle of a 1,000-role catalog apply. Postgres stops, compute_ctl
//! exits 0 and logs how far the apply got (statements that ran, of those
//! planned), and a restart from the same spec converges. A `POST /terminate`
//! at the same point answers with that partial state
//! (`catalog_interrupted`), as `/status` shows it.
//!
//! "In the middle" is a known point, not a race: a session of the test holds
//! an uncommitted `ALTER ROLE` on the spec's last role, so the apply creates
//! the 1,000 new roles (each its own implicit transaction) and then waits on
//! that row lock until SIGTERM.

use crate::support;

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::{md5_hex, query_value, wait_for};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const ROLES: usize = 1_000;
const LONG: Duration = Duration::from_secs(120);

/// `ROLES` new roles, then `gate` with the password of `generation`.
fn spec(operation: &str, roles: usize, generation: u32) -> Value {
    let mut list: Vec<Value> = (0..roles)
        .map(|i| {
            let name = format!("stop_role_{i}");
            json!({"name": name, "encrypted_password": md5_hex("pw", &name)})
        })
        .collect();
    list.push(json!({"name": "gate", "encrypted_password": md5_hex(&format!("gate{generation}"), "gate")}));
    json!({
        "format_version": 1.0,
        "operation_uuid": operation,
        "cluster": {"roles": list, "databases": []},
    })
}

/// `(executed, planned)` from the line that reports the interrupted apply.
fn interrupted_counts(line: &str) -> (u64, u64) {
    let after = line
        .split(" after ")
        .nth(1)
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    let mut words = after.split_whitespace();
    let executed = words.next().and_then(|w| w.parse().ok());
    let of = words.next();
    let planned = words.next().and_then(|w| w.parse().ok());
    match (executed, of, planned) {
        (Some(e), Some("of"), Some(p)) => (e, p),
        _ => panic!("cannot read `N of M` in {line:?}"),
    }
}

/// A 1,000-role apply under way and held at a known point: a session holds
/// an uncommitted `ALTER ROLE` on `gate`, the spec's last role, so the apply
/// has committed every new role and waits on that row lock.
struct HeldApply {
    big: Value,
    pending: tokio::task::JoinHandle<support::compute::Reply>,
    holder: tokio_postgres::Client,
    observer: tokio_postgres::Client,
    /// The new roles committed before the gate (all of them).
    committed: u64,
}

async fn hold_apply_at_gate(c: &Compute) -> HeldApply {
    // Hold gate's catalog row: the apply's `ALTER ROLE gate PASSWORD` waits.
    let holder = c.sql("postgres", "row-holder").await;
    holder
        .batch_execute("BEGIN; ALTER ROLE gate CONNECTION LIMIT 7")
        .await
        .expect("the holder's ALTER ROLE");
    let big = spec("stop-b", ROLES, 2);
    let pending = c.spawn_configure(&big);
    let observer = c.sql("postgres", "observer").await;
    wait_for(LONG, "the apply to wait on gate's row", || async {
        let waiting = query_value(
            &observer,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND application_name NOT IN ('row-holder', 'observer')",
        )
        .await;
        (waiting.as_deref() == Some("1")).then_some(())
    })
    .await;
    let committed: u64 = query_value(
        &observer,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'stop\\_role\\_%'",
    )
    .await
    .and_then(|v| v.parse().ok())
    .expect("a role count");
    assert_eq!(
        committed, ROLES as u64,
        "each CREATE ROLE commits on its own before the gate"
    );
    HeldApply {
        big,
        pending,
        holder,
        observer,
        committed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_catalog_apply_stops_postgres_reports_progress_and_a_restart_converges() {
    crate::need_postgres!();
    let mut c = Compute::serving(ComputeOpts::with_spec(spec("stop-a", 0, 1))).await;
    c.wait_running().await;

    let HeldApply {
        big,
        pending,
        holder,
        observer,
        committed,
    } = hold_apply_at_gate(&c).await;
    c.signal(Signal::SIGTERM);
    let exit = c.wait_exit(LONG).await;
    let log = c.log();
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop\n{log}");
    assert!(
        c.postgres_processes().is_empty(),
        "no Postgres process is left\n{log}"
    );
    assert!(
        !c.pgdata.join("postmaster.pid").exists(),
        "Postgres removed its postmaster.pid on the way out\n{log}"
    );
    let line = c
        .wait_log("catalog apply interrupted by a terminate request", LONG)
        .await;
    let (executed, planned) = interrupted_counts(&line);
    assert_eq!(
        planned,
        ROLES as u64 + 1,
        "1,000 CREATE ROLE and gate's password: {line}"
    );
    // Every statement counted had committed; the ones whose answers were
    // not read yet may be missing, never more than the pipeline holds.
    assert!(
        executed <= committed && executed + 64 >= committed,
        "the report ({executed}) matches what committed ({committed}): {line}"
    );
    let answer = pending.await.expect("the configure task");
    assert_ne!(
        answer.status, 200,
        "an interrupted configure is not a success"
    );
    drop((holder, observer));

    // A restart from the same spec converges: every role, gate's new password.
    c.respawn(Some(big));
    let client = c.wait_running().await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE rolname LIKE 'stop\\_role\\_%'), \
                    max(rolpassword) FILTER (WHERE rolname = 'gate') FROM pg_authid",
            &[],
        )
        .await
        .expect("the catalog");
    assert_eq!(row.get::<_, i64>(0), ROLES as i64);
    assert_eq!(
        row.get::<_, Option<String>>(1),
        Some(format!("md5{}", md5_hex("gate2", "gate")))
    );
    let st = c.status().await;
    assert_eq!(st["status"], "running", "{st}");
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(LONG).await.code(), Some(0));
}

/// The same interruption by `POST /terminate`: its answer, which is what a
/// control plane reads, carries the apply's partial state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_during_a_catalog_apply_answers_with_how_far_it_got() {
    crate::need_postgres!();
    let c = Compute::serving(ComputeOpts::with_spec(spec("stop-a", 0, 1))).await;
    c.wait_running().await;
    let held = hold_apply_at_gate(&c).await;
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = &r.json()["catalog_interrupted"];
    assert_eq!(p["operation"], "reconfigure", "{}", r.text);
    assert_eq!(p["by"], "terminate", "{}", r.text);
    assert_eq!(p["planned"], ROLES as u64 + 1, "{}", r.text);
    let executed = p["executed"].as_u64().expect("executed");
    assert!(
        executed <= held.committed && executed + 64 >= held.committed,
        "the answer ({executed}) matches what committed ({}): {}",
        held.committed,
        r.text
    );
    assert!(c.wait_exit(LONG).await.success(), "{}", c.log());
    drop((held.holder, held.observer));
}
