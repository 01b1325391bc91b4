//! The Postgres lifecycle end to end: the real compute_ctl binary on real
//! Postgres 15 (issue 3): PGDATA, config, start (catalog included),
//! supervision and termination.

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::control_plane::{FakeControlPlane, Reply};
use crate::support::os::{alive, children_of, postgres_user, uid_of};
use crate::support::ports::free_port;
use crate::support::postgres::TestPostgres;
use crate::support::{fixture, wait_for};
use nix::sys::signal::Signal;
use serde_json::json;

/// Failures must end the process within this, never hang.
const FAIL_BOUND: Duration = Duration::from_secs(20);

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW {name}: {e}"))
        .get(0)
}

/// `fixtures/spec.json`: settings, roles and databases.
fn quickstart_spec() -> serde_json::Value {
    fixture("spec.json")
}

#[tokio::test]
async fn starts_from_the_fixture_spec_and_show_returns_its_values() {
    let c = Compute::start(ComputeOpts::with_spec(quickstart_spec()));
    let client = c.wait_running().await;
    assert_eq!(show(&client, "shared_buffers").await, "128MB");
    assert_eq!(show(&client, "max_connections").await, "100");
    assert_eq!(show(&client, "log_connections").await, "on");
    assert_eq!(show(&client, "password_encryption").await, "md5");
    assert_eq!(show(&client, "port").await, c.pg_port.to_string());
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "cloud_admin");
    // The override include is the very last line of postgresql.conf.
    let conf = std::fs::read_to_string(c.pgdata.join("postgresql.conf")).unwrap();
    assert_eq!(
        conf.lines().last(),
        Some("include_if_exists = 'compute_ctl.override.conf'")
    );
    // The included file exists from the start: no Postgres process logs
    // `skipping missing configuration file` at each reload.
    let overrides = std::fs::read_to_string(c.pgdata.join("compute_ctl.override.conf")).unwrap();
    assert!(overrides.starts_with("# Local overrides"), "{overrides}");
    assert!(c.log().contains("source=initdb"), "{}", c.log());
    assert!(
        !c.log().contains("skipping missing configuration file"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn postgres_processes_run_as_the_postgres_user() {
    let c = Compute::start(ComputeOpts::with_spec(quickstart_spec()));
    let _client = c.wait_running().await;
    let (uid, _) = postgres_user();
    let procs = c.postgres_processes();
    // postmaster, checkpointer, background writer, walwriter, autovacuum, ...
    assert!(
        procs.len() >= 4,
        "expected Postgres processes, found {procs:?}"
    );
    for pid in procs {
        let owner = uid_of(pid);
        // A backend that exited between the listing and the read (the
        // activity monitor's, an autovacuum worker) ran as no one now.
        if owner.is_none() && !alive(pid) {
            continue;
        }
        assert_eq!(owner, Some(uid), "process {pid} does not run as postgres");
    }
    let pgdata_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&c.pgdata).unwrap());
    assert_eq!(pgdata_owner, uid);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&c.pgdata).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn hostile_setting_values_round_trip_through_show() {
    let hostile =
        r#"here's a backslash \ and a quote ' and a double-quote " hooray # not a comment"#;
    let mut spec = quickstart_spec();
    let settings = spec["cluster"]["settings"].as_array_mut().unwrap();
    settings.push(json!({"name": "test.escaping", "value": hostile, "vartype": "string"}));
    settings.push(json!({"name": "cluster_name", "value": "it''s \\\\ 'x'", "vartype": "string"}));
    settings.push(
        json!({"name": "test.spaces", "value": "  leading and trailing  ", "vartype": "string"}),
    );
    settings.push(
        json!({"name": "test.not_a_token", "value": "1; shared_buffers = 1", "vartype": "enum"}),
    );
    settings.push(json!({"name": "port", "value": "5432", "vartype": "integer"}));
    let c = Compute::start(ComputeOpts::with_spec(spec));
    let client = c.wait_running().await;
    assert_eq!(show(&client, "test.escaping").await, hostile);
    assert_eq!(show(&client, "cluster_name").await, "it''s \\\\ 'x'");
    assert_eq!(
        show(&client, "test.spaces").await,
        "  leading and trailing  "
    );
    assert_eq!(
        show(&client, "test.not_a_token").await,
        "1; shared_buffers = 1"
    );
    assert_eq!(show(&client, "shared_buffers").await, "128MB");
    // The -C port wins over the spec's, with a warning in the log.
    assert_eq!(show(&client, "port").await, c.pg_port.to_string());
    assert!(
        c.log().contains("the spec's port is ignored"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn base_backup_start_sees_the_source_rows() {
    let source = TestPostgres::start(&[]).await;
    let src = source.client("postgres").await;
    src.batch_execute(
        "CREATE TABLE moved (id int PRIMARY KEY, note text);
         INSERT INTO moved SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
    )
    .await
    .unwrap();
    let mut spec = quickstart_spec();
    spec["pageserver_connstring"] = source.connstr().into();
    let c = Compute::start(ComputeOpts::with_spec(spec));
    let client = c.wait_running().await;
    let row = client
        .query_one("SELECT count(*), max(note) FROM moved", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1000);
    assert_eq!(row.get::<_, String>(1), "row 999");
    // It is a copy: writes to the compute do not reach the source.
    client
        .batch_execute("INSERT INTO moved VALUES (1001, 'new')")
        .await
        .unwrap();
    let n: i64 = src
        .query_one("SELECT count(*) FROM moved", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    assert!(c.log().contains("source=pg_basebackup"), "{}", c.log());
    assert_eq!(
        show(&client, "neon.pageserver_connstring").await,
        source.connstr()
    );
}

#[tokio::test]
async fn base_backup_from_an_unreachable_source_fails_naming_the_command() {
    let mut spec = quickstart_spec();
    spec["pageserver_connstring"] = format!(
        "host=127.0.0.1 port={} user=cloud_admin password=s3cret",
        free_port()
    )
    .into();
    let c = Compute::start(ComputeOpts::with_spec(spec));
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success());
    let log = c.log();
    assert!(log.contains("preparing PGDATA failed: `"), "{log}");
    assert!(log.contains("pg_basebackup"), "{log}");
    assert!(
        log.contains("password=***") && !log.contains("s3cret"),
        "{log}"
    );
}

#[tokio::test]
async fn kill_9_of_the_postmaster_fails_the_compute_quickly() {
    let c = Compute::start(ComputeOpts::with_spec(quickstart_spec()));
    let _client = c.wait_running().await;
    let pm = c.postmaster_pid().expect("postmaster pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success(), "exit {status}");
    let log = c.log();
    assert!(
        log.contains("Postgres exited unexpectedly (killed by signal 9)"),
        "{log}"
    );
    assert!(log.contains("to=failed"), "{log}");
}

async fn signal_terminates_cleanly(sig: Signal) {
    let c = Compute::start(ComputeOpts::with_spec(quickstart_spec()));
    let _client = c.wait_running().await;
    assert!(c.postmaster_pid().is_some());
    c.signal(sig);
    let status = c.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", c.log());
    assert!(c.log().contains("to=terminated"), "{}", c.log());
    assert_eq!(
        c.postgres_processes(),
        Vec::<i32>::new(),
        "Postgres processes left behind"
    );
    assert!(
        c.log().contains("database system is shut down"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn sigterm_terminates_with_exit_0_and_no_postgres_left() {
    signal_terminates_cleanly(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_terminates_with_exit_0_and_no_postgres_left() {
    signal_terminates_cleanly(Signal::SIGINT).await;
}

#[tokio::test]
async fn sigterm_before_any_spec_terminates() {
    let c = Compute::start(ComputeOpts::without_spec());
    wait_for(
        FAIL_BOUND,
        "compute_ctl to install its signal handlers",
        || async { c.log().contains("compute_ctl started").then_some(()) },
    )
    .await;
    c.signal(Signal::SIGTERM);
    let status = c.wait_exit(FAIL_BOUND).await;
    assert_eq!(status.code(), Some(0), "{}", c.log());
}

#[tokio::test]
async fn port_in_use_fails_with_a_message_naming_the_port() {
    let port = free_port();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut opts = ComputeOpts::with_spec(quickstart_spec());
    opts.pg_port = Some(port);
    let c = Compute::start(opts);
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success());
    let log = c.log();
    assert!(
        log.contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{log}"
    );
    assert!(c.postgres_processes().is_empty());
}

#[tokio::test]
async fn a_missing_postgres_binary_fails_with_a_message_naming_it() {
    let mut opts = ComputeOpts::with_spec(quickstart_spec());
    opts.pgbin = "/nonexistent/pg/bin/postgres".into();
    let c = Compute::start(opts);
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success());
    let log = c.log();
    assert!(log.contains("/nonexistent/pg/bin/postgres"), "{log}");
    assert!(log.contains("does not exist"), "{log}");
}

#[tokio::test]
async fn a_bad_setting_in_the_launch_spec_fails_before_postgres_starts() {
    // Issue 24: the launch spec's settings are checked as /configure checks
    // them, before Postgres starts (it used to start and exit on the value).
    let mut spec = quickstart_spec();
    spec["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "work_mem", "value": "banana", "vartype": "string"}));
    let c = Compute::start(ComputeOpts::with_spec(spec));
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success());
    let log = c.log();
    assert!(
        log.contains("refuses work_mem = 'banana'") && log.contains("$.cluster.settings["),
        "{log}"
    );
    assert!(log.contains("Postgres was not started"), "{log}");
    assert!(!log.contains("Postgres exited during start-up"), "{log}");
    assert_eq!(c.postmaster_pid(), None);
}

#[tokio::test]
async fn spec_from_the_control_plane_after_failures() {
    let spec = quickstart_spec();
    let cp = FakeControlPlane::start(
        vec![
            Reply::Status(503, "starting"),
            Reply::Status(500, "oops"),
            Reply::Json(json!({"status": "empty", "spec": null})),
        ],
        Reply::Json(json!({"status": "attached", "spec": spec})),
    )
    .await;
    let opts = ComputeOpts::without_spec().args([
        "--control-plane-uri",
        &cp.uri(),
        "--compute-id",
        "compute-e2e",
    ]);
    let c = Compute::start(opts);
    let client = c.wait_running().await;
    assert_eq!(show(&client, "shared_buffers").await, "128MB");
    assert_eq!(cp.requests(), 4);
    assert!(cp.ids().iter().all(|id| id == "compute-e2e"));
    // Waiting for the spec is timed from the start of compute_ctl: it covers
    // the failures' backoff and the 500 ms poll after `spec: null`.
    let t = startup_timings(&c.wait_log("Postgres is running", FAIL_BOUND).await);
    assert!(t["wait_for_spec_ms"] >= 500, "{t:?}");
    assert!(t["prepare_pgdata_ms"] > 0, "{t:?}");
    assert!(
        t["total_startup_ms"]
            >= t["wait_for_spec_ms"] + t["prepare_pgdata_ms"] + t["start_postgres_ms"],
        "{t:?}"
    );
}

/// The startup timings of the line the supervisor logs when Postgres is running.
fn startup_timings(line: &str) -> std::collections::BTreeMap<String, u64> {
    let body = line.split_once("StartupTimings {").unwrap().1;
    body.trim_end_matches(|c: char| c == '}' || c.is_whitespace())
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn as_pid_1_orphans_are_reaped_and_the_supervisor_still_sees_postgres_die() {
    let mut opts = ComputeOpts::with_spec(quickstart_spec());
    opts.pid1 = true;
    let c = Compute::start(opts);
    let client = c.wait_running().await;
    // The init is the child of `unshare`; the supervisor is the init's child.
    let init = wait_for(FAIL_BOUND, "the namespace init", || async {
        children_of(c.pid as i32).first().copied()
    })
    .await;
    assert_eq!(
        children_of(init).len(),
        1,
        "only the supervisor runs under init"
    );
    // A background job of a shell that exits is orphaned to PID 1 of the namespace.
    // The shell reads its input to the end first: one that exits before
    // Postgres flushes the row fails the COPY with a broken pipe.
    client
        .batch_execute(
            "COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; sleep 0.3 >/dev/null 2>&1 </dev/null &'",
        )
        .await
        .unwrap();
    assert!(
        children_of(init).len() >= 2,
        "the orphan was not reparented to init"
    );
    wait_for(
        Duration::from_secs(10),
        "the orphan to exit and be reaped",
        || async { (children_of(init).len() == 1).then_some(()) },
    )
    .await;
    // The supervisor (not the init) still gets the postmaster's exit status.
    let pm = c.postmaster_pid().expect("postmaster pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    let status = c.wait_exit(FAIL_BOUND).await;
    assert!(!status.success());
    assert!(
        c.log()
            .contains("Postgres exited unexpectedly (killed by signal 9)"),
        "{}",
        c.log()
    );
}
