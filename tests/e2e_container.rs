//! End-to-end tests of the container image `compute_ctl:dev` (made by
//! `just image`) with testcontainers: the real binary, real Postgres 15 inside
//! the image, driven through the mapped HTTP and Postgres ports.
//!
//! Gating: each test runs when a Docker daemon answers and the image exists;
//! otherwise it prints `SKIPPED ...` and passes, unless
//! `COMPUTE_CTL_REQUIRE_DOCKER=1` (set by `.ci/run`) turns that into a failure.

mod e2e_support;

use std::time::Duration;

use e2e_support::{Compute, docker_ready, eventually, fixture};
use md5::{Digest, Md5};
use serde_json::json;
use testcontainers::core::ExecCommand;

/// Skips the test (or fails it under COMPUTE_CTL_REQUIRE_DOCKER=1) without Docker.
macro_rules! require_docker {
    ($name:literal) => {
        if !docker_ready($name).await {
            return;
        }
    };
}

const EXIT_TIMEOUT: Duration = Duration::from_secs(40);
/// Postgres's own line for a completed shutdown.
const PG_SHUT_DOWN: &str = "database system is shut down";

/// The `md5...` verifier Postgres stores for `password` of `role`, without the prefix.
fn md5_verifier(password: &str, role: &str) -> String {
    hex::encode(Md5::digest(format!("{password}{role}")))
}

async fn one_string(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn rolpassword(client: &tokio_postgres::Client, role: &str) -> Option<String> {
    client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("read pg_authid")
        .get(0)
}

/// Supervisor sessions Postgres logged (`log_connections = on`): the
/// supervisor names its sessions `application_name=compute_ctl`.
fn supervisor_connections(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("connection authorized") && l.contains("application_name=compute_ctl")
        })
        .count()
}

/// Opens a session named `marker` and waits until Postgres's line for it is in
/// the container log: every line Postgres wrote before it is there too.
async fn log_through_marker(compute: &Compute, marker: &str) -> String {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=cloud_admin dbname=postgres application_name={marker}",
        compute.pg_port
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("marker session");
    tokio::spawn(conn);
    let log = eventually(
        "marker session in the Postgres log",
        Duration::from_secs(10),
        || async {
            let log = compute.logs().await;
            if log.contains(&format!("application_name={marker}")) {
                Ok(log)
            } else {
                Err("marker not logged yet".to_string())
            }
        },
    )
    .await;
    drop(client);
    log
}

#[tokio::test]
async fn start_with_spec_serves_its_roles_and_databases() {
    require_docker!("start_with_spec_serves_its_roles_and_databases");
    let compute = Compute::start(&fixture("spec.json")).await;
    let status = compute.status().await.expect("status");
    assert_eq!(status["status"], "running", "{status}");

    let sql = compute.sql().await;
    let roles: Vec<String> = sql
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('alice', 'bob') ORDER BY 1",
            &[],
        )
        .await
        .expect("list roles")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["alice", "bob"]);
    let dbs: Vec<(String, String)> = sql
        .query(
            "SELECT datname, pg_get_userbyid(datdba)::text FROM pg_database \
             WHERE datname IN ('app', 'reports') ORDER BY 1",
            &[],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        dbs,
        [
            ("app".into(), "alice".into()),
            ("reports".into(), "bob".into())
        ]
    );
    assert_eq!(
        rolpassword(&sql, "alice").await.as_deref(),
        Some("md591c76e9f0e4ed85662e7ded2446617b4")
    );
    assert_eq!(one_string(&sql, "SHOW max_connections").await, "100");

    // The image runs compute_ctl (PID 1) and so Postgres as the postgres user, not root.
    let mut exec = compute
        .container
        .exec(ExecCommand::new([
            "bash",
            "-c",
            "echo $(stat -c %U /proc/1) $(stat -c %U $(dirname $(readlink -f /proc/1/exe)))",
        ]))
        .await
        .expect("exec in the container");
    let owner = String::from_utf8(exec.stdout_to_vec().await.expect("exec output")).unwrap();
    assert_eq!(owner.split_whitespace().next(), Some("postgres"), "{owner}");

    // The image's HEALTHCHECK probes /health.
    let health = eventually("HEALTHCHECK healthy", Duration::from_secs(45), || async {
        match compute.health().await?.as_str() {
            "healthy" => Ok("healthy".to_string()),
            other => Err(other.to_string()),
        }
    })
    .await;
    assert_eq!(health, "healthy");
}

#[tokio::test]
async fn notify_after_migration_skips_catalog_work_then_full_apply_changes_password() {
    require_docker!("notify_after_migration_skips_catalog_work_then_full_apply_changes_password");
    let compute = Compute::start(&fixture("spec.json")).await;
    let sql = compute.sql().await;
    let password_before = rolpassword(&sql, "alice").await;
    assert_eq!(one_string(&sql, "SHOW statement_timeout").await, "0");

    let before = log_through_marker(&compute, "e2e_marker_before").await;
    assert!(
        supervisor_connections(&before) > 0,
        "the start applied the catalog, so Postgres must have logged supervisor sessions; \
         is log_connections on and application_name=compute_ctl set?\n{before}"
    );

    // Storage moved: new pageserver, a changed setting, and a new password for
    // alice that a notify must NOT apply.
    let new_password = md5_verifier("rotated-secret", "alice");
    let mut notify = fixture("notify.json");
    assert_eq!(notify["skip_pg_catalog_updates"], true);
    notify["pageserver_connstring"] = json!("host=10.0.0.42 port=6401");
    notify["cluster"]["roles"][0]["name"] = json!("alice");
    notify["cluster"]["roles"][0]["encrypted_password"] = json!(new_password);
    let (code, body) = compute.configure(&notify).await;
    assert_eq!(code, 200, "notify /configure: {body}");
    assert_eq!(body["status"], "running", "{body}");

    let timeout = eventually(
        "statement_timeout reloaded",
        Duration::from_secs(10),
        || async {
            let fresh = compute.sql().await;
            match one_string(&fresh, "SHOW statement_timeout").await.as_str() {
                "30s" => Ok(()),
                other => Err(format!("statement_timeout = {other}")),
            }
        },
    );
    timeout.await;
    assert_eq!(
        rolpassword(&sql, "alice").await,
        password_before,
        "a notify with skip_pg_catalog_updates must not touch roles"
    );
    let after = log_through_marker(&compute, "e2e_marker_after").await;
    let new_sessions = supervisor_connections(&after) - supervisor_connections(&before);
    assert_eq!(
        new_sessions, 0,
        "the notify opened {new_sessions} supervisor SQL session(s); the log:\n{after}"
    );

    // The same change without the flag is a full apply: the password changes.
    let mut full = notify.clone();
    full["skip_pg_catalog_updates"] = json!(false);
    full["operation_uuid"] = json!("5f1c1c3e-0000-4000-8000-0000000000e2");
    let (code, body) = compute.configure(&full).await;
    assert_eq!(code, 200, "full /configure: {body}");
    assert_eq!(
        rolpassword(&sql, "alice").await,
        Some(format!("md5{new_password}"))
    );
}

#[tokio::test]
async fn invalid_spec_is_rejected_and_the_compute_keeps_serving() {
    require_docker!("invalid_spec_is_rejected_and_the_compute_keeps_serving");
    let compute = Compute::start(&fixture("spec.json")).await;
    let (code, body) = compute
        .configure(&fixture("invalid_three_mistakes.json"))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a 400 names the problems: {body}"
    );
    let status = compute.status().await.expect("status after a 400");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(
        status["operation_uuid"], "5f1c1c3e-0000-4000-8000-000000000001",
        "the spec in effect is still the start spec: {status}"
    );
    let sql = compute.sql().await;
    assert_eq!(one_string(&sql, "SHOW statement_timeout").await, "0");
    let n: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname IN ('app', 'reports')",
            &[],
        )
        .await
        .expect("count databases")
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn terminate_stops_postgres_and_the_container_exits_zero() {
    require_docker!("terminate_stops_postgres_and_the_container_exits_zero");
    let compute = Compute::start(&fixture("spec_minimal.json")).await;
    assert_eq!(compute.terminate().await, 200);
    assert_eq!(
        compute.wait_exit(EXIT_TIMEOUT).await,
        0,
        "{}",
        compute.logs().await
    );
    let log = compute.logs().await;
    assert!(
        log.contains(PG_SHUT_DOWN),
        "Postgres did not shut down cleanly:\n{log}"
    );
}

#[tokio::test]
async fn docker_stop_shuts_down_gracefully_with_exit_zero() {
    require_docker!("docker_stop_shuts_down_gracefully_with_exit_zero");
    let compute = Compute::start(&fixture("spec_minimal.json")).await;
    // `docker stop`: SIGTERM (the image's STOPSIGNAL), SIGKILL only after 30 s.
    compute
        .container
        .stop_with_timeout(Some(30))
        .await
        .expect("docker stop");
    assert_eq!(
        compute.wait_exit(EXIT_TIMEOUT).await,
        0,
        "{}",
        compute.logs().await
    );
    let log = compute.logs().await;
    assert!(
        log.contains("fast shutdown request") && log.contains(PG_SHUT_DOWN),
        "SIGTERM must become a fast Postgres shutdown:\n{log}"
    );
}

#[test]
fn md5_verifier_is_the_one_postgres_stores() {
    // Known answer: md5("secret" || "alice"), as `CREATE ROLE alice PASSWORD 'secret'` stores it.
    assert_eq!(
        md5_verifier("secret", "alice"),
        "4a0a68b43b6cd5cf266fa02f196e2371"
    );
}
