//! End-to-end tests of the container image `compute_ctl:dev` (made by
//! `just image`) with testcontainers: the real binary and real Postgres 15
//! inside the image, driven through Docker's mapped HTTP and Postgres ports.
//!
//! SQL from outside goes through the mapped Postgres port as a spec role with
//! a password, as a user of the image connects: pg_hba.conf trusts the
//! supervisor's superuser (cloud_admin) over loopback only, and through a
//! mapped port Postgres sees Docker's gateway address, not loopback. What only
//! a superuser can read (pg_authid) is read with psql inside the container.
//!
//! Gating: each test runs when a Docker daemon answers and the image exists;
//! otherwise it prints `SKIPPED ...` and passes, unless
//! `COMPUTE_CTL_REQUIRE_DOCKER=1` (set by `.ci/run`) turns that into a failure.

use crate::e2e_support;

use std::time::Duration;

use crate::e2e_support::{Compute, docker_ready, eventually, fixture};
use md5::{Digest, Md5};
use serde_json::{Value, json};

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
const ALICE_PASSWORD: &str = "e2e-alice-password";
const START_OPERATION: &str = "5f1c1c3e-0000-4000-8000-000000000001";

/// The md5 verifier Postgres stores for `password` of `role`, without the `md5` prefix.
fn md5_verifier(password: &str, role: &str) -> String {
    hex::encode(Md5::digest(format!("{password}{role}")))
}

/// A fixture spec made reachable from outside the container: Postgres listens
/// on every interface (by default only on the `-C` host, loopback here), and
/// alice has a password the tests know.
fn container_spec(name: &str) -> Value {
    let mut spec = fixture(name);
    assert_eq!(spec["cluster"]["roles"][0]["name"], "alice");
    spec["cluster"]["roles"][0]["encrypted_password"] =
        json!(md5_verifier(ALICE_PASSWORD, "alice"));
    spec["cluster"]["settings"]
        .as_array_mut()
        .expect("cluster.settings is a list")
        .push(json!({"name": "listen_addresses", "value": "*", "vartype": "string"}));
    spec
}

fn start_spec() -> Value {
    container_spec("spec.json")
}

async fn alice(compute: &Compute) -> tokio_postgres::Client {
    compute
        .connect_as("alice", ALICE_PASSWORD, "e2e_test")
        .await
        .unwrap_or_else(|e| panic!("alice connects through the mapped port: {e}"))
}

async fn one_string(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn stored_password(compute: &Compute, role: &str) -> String {
    compute
        .psql_superuser(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
        ))
        .await
}

/// Sessions of the supervisor that Postgres logged (`log_connections = on`
/// in the spec); the supervisor names its sessions `application_name=compute_ctl`.
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
    let client = compute
        .connect_as("alice", ALICE_PASSWORD, marker)
        .await
        .expect("marker session");
    let needle = format!("application_name={marker}");
    let log = eventually(
        "marker session in the Postgres log",
        Duration::from_secs(10),
        || async {
            let log = compute.logs().await;
            if log.contains(&needle) {
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
    let compute = Compute::start(&start_spec()).await;
    let status = compute.status().await.expect("status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["operation_uuid"], START_OPERATION, "{status}");
    // The image's settings cache (written at build) spared the start its
    // `postgres --describe-config` and probes.
    let log = compute.logs().await;
    assert!(
        log.contains("settings catalogue read") && log.contains("from_cache=true"),
        "the image's settings cache was not used:\n{log}"
    );

    let sql = alice(&compute).await;
    let roles: Vec<String> = sql
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname IN ('alice', 'bob') ORDER BY 1",
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
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database \
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
            ("app".to_string(), "alice".to_string()),
            ("reports".to_string(), "bob".to_string())
        ]
    );
    assert_eq!(one_string(&sql, "SHOW max_connections").await, "100");
    assert_eq!(
        stored_password(&compute, "alice").await,
        format!("md5{}", md5_verifier(ALICE_PASSWORD, "alice"))
    );
    assert!(
        compute
            .connect_as("alice", "wrong", "e2e_test")
            .await
            .is_err(),
        "a wrong password must be refused"
    );
    assert!(
        compute
            .connect_as("cloud_admin", "", "e2e_test")
            .await
            .is_err(),
        "the supervisor's superuser must not be reachable from outside the container"
    );

    // compute_ctl is PID 1 and runs as postgres (USER in the image), and so does Postgres.
    let data_dir = compute
        .psql_superuser("SELECT current_setting('data_directory')")
        .await;
    assert_eq!(data_dir, "/var/lib/postgresql/compute/pgdata");
    let pid1_user = e2e_support::docker(&[
        "exec",
        compute.container.id(),
        "stat",
        "-c",
        "%U",
        "/proc/1",
    ])
    .await
    .expect("stat /proc/1");
    assert_eq!(pid1_user, "postgres");

    // The image's HEALTHCHECK probes /health.
    eventually("HEALTHCHECK healthy", Duration::from_secs(45), || async {
        match compute.health().await?.as_str() {
            "healthy" => Ok(()),
            other => Err(format!("health: {other}")),
        }
    })
    .await;
}

#[tokio::test]
async fn notify_after_migration_skips_catalog_work_then_full_apply_changes_password() {
    require_docker!("notify_after_migration_skips_catalog_work_then_full_apply_changes_password");
    let compute = Compute::start(&start_spec()).await;
    let sql = alice(&compute).await;
    let password_before = stored_password(&compute, "alice").await;
    assert_eq!(one_string(&sql, "SHOW statement_timeout").await, "0");
    // The activity monitor keeps one supervisor session open; wait for it so
    // that its first connection cannot fall into the notify's window.
    eventually("the monitor's session", Duration::from_secs(20), || async {
        let n: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'compute_ctl'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if n > 0 {
            Ok(())
        } else {
            Err("no supervisor session yet".into())
        }
    })
    .await;

    let before = log_through_marker(&compute, "e2e_marker_before").await;
    assert!(
        supervisor_connections(&before) > 0,
        "the start applied the catalog, so Postgres must have logged supervisor sessions:\n{before}"
    );

    // Storage moved: a new pageserver, a changed setting, and a new password
    // for alice that a notify must NOT apply.
    let new_password = "e2e-rotated-password";
    let mut notify = container_spec("notify.json");
    assert_eq!(notify["skip_pg_catalog_updates"], true);
    assert_eq!(notify["cluster"]["roles"][0]["name"], "alice");
    notify["pageserver_connstring"] = json!("host=pageserver-after-migration port=6401");
    notify["cluster"]["roles"][0]["encrypted_password"] =
        json!(md5_verifier(new_password, "alice"));
    let (code, body) = compute.configure(&notify).await;
    assert_eq!(code, 200, "notify /configure: {body}");
    assert_eq!(body["status"], "running", "{body}");

    eventually(
        "statement_timeout reloaded",
        Duration::from_secs(10),
        || async {
            let fresh = alice(&compute).await;
            match one_string(&fresh, "SHOW statement_timeout").await.as_str() {
                "30s" => Ok(()),
                other => Err(format!("statement_timeout = {other}")),
            }
        },
    )
    .await;
    assert_eq!(
        stored_password(&compute, "alice").await,
        password_before,
        "a notify with skip_pg_catalog_updates must not touch roles"
    );
    let after = log_through_marker(&compute, "e2e_marker_after").await;
    let new_sessions = supervisor_connections(&after) - supervisor_connections(&before);
    // One session, for the pg_file_settings check after the reload (issue
    // 24); none for catalog work.
    assert_eq!(
        new_sessions, 1,
        "the notify opened {new_sessions} supervisor SQL session(s), expected only its pg_file_settings check; the log:\n{after}"
    );

    // The same change without the flag is a full apply: the password changes.
    let mut full = notify.clone();
    full["skip_pg_catalog_updates"] = json!(false);
    full["operation_uuid"] = json!("5f1c1c3e-0000-4000-8000-0000000000e2");
    let (code, body) = compute.configure(&full).await;
    assert_eq!(code, 200, "full /configure: {body}");
    assert_eq!(
        stored_password(&compute, "alice").await,
        format!("md5{}", md5_verifier(new_password, "alice"))
    );
    compute
        .connect_as("alice", new_password, "e2e_test")
        .await
        .expect("alice logs in with the new password");
}

#[tokio::test]
async fn invalid_spec_is_rejected_and_the_compute_keeps_serving() {
    require_docker!("invalid_spec_is_rejected_and_the_compute_keeps_serving");
    let compute = Compute::start(&start_spec()).await;
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
        status["operation_uuid"], START_OPERATION,
        "the spec in effect is still the start spec: {status}"
    );
    let sql = alice(&compute).await;
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
    let compute = Compute::start(&start_spec()).await;
    assert_eq!(compute.terminate().await, 200);
    let code = compute.wait_exit(EXIT_TIMEOUT).await;
    let log = compute.logs().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(PG_SHUT_DOWN),
        "Postgres did not shut down cleanly:\n{log}"
    );
}

#[tokio::test]
async fn docker_stop_shuts_down_gracefully_with_exit_zero() {
    require_docker!("docker_stop_shuts_down_gracefully_with_exit_zero");
    let compute = Compute::start(&start_spec()).await;
    // `docker stop`: SIGTERM (the image's STOPSIGNAL), SIGKILL only after 30 s.
    compute
        .container
        .stop_with_timeout(Some(30))
        .await
        .expect("docker stop");
    let code = compute.wait_exit(EXIT_TIMEOUT).await;
    let log = compute.logs().await;
    assert_eq!(code, 0, "{log}");
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

/// Storage that really moves, in containers: storage A (a primary) and B (a
/// streaming standby of A), a Replica compute of A moved to B by a notify;
/// rows written on A after the move arrive through B, and Postgres is the
/// same postmaster throughout.
#[tokio::test]
async fn a_replica_compute_moves_between_two_storage_containers() {
    require_docker!("a_replica_compute_moves_between_two_storage_containers");
    let tag = std::process::id();
    let network = format!("compute-ctl-e2e-storage-{tag}");
    let a = e2e_support::Storage::start(&network, &format!("storage-a-{tag}"), None).await;
    a.exec("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'before')")
        .await;
    let b = e2e_support::Storage::start(&network, &format!("storage-b-{tag}"), Some(&a.name)).await;

    let mut spec = start_spec();
    spec["mode"] = json!("Replica");
    spec["pageserver_connstring"] = json!(a.connstr());
    let c = Compute::start_on(
        &spec,
        &network,
        &format!("replica-{tag}"),
        &["--compute-id", "replica-e2e"],
    )
    .await;
    assert_eq!(row(&c, 1).await, "before");
    let started = c.psql_superuser("SELECT pg_postmaster_start_time()").await;
    eventually("streaming from A", e2e_support::START_TIMEOUT, || async {
        let s = sender(&c).await;
        if s == format!("streaming {}", a.name) {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;

    let mut notify = spec.clone();
    notify["operation_uuid"] = json!("5f1c1c3e-0000-4000-8000-00000000000b");
    notify["skip_pg_catalog_updates"] = json!(true);
    notify["pageserver_connstring"] = json!(b.connstr());
    let (code, body) = c.configure(&notify).await;
    assert_eq!(code, 200, "{body}");
    eventually("streaming from B", e2e_support::START_TIMEOUT, || async {
        let s = sender(&c).await;
        if s == format!("streaming {}", b.name) {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    a.exec("INSERT INTO t VALUES (2, 'after the move')").await;
    eventually(
        "the row written after the move",
        e2e_support::START_TIMEOUT,
        || async {
            let r = row(&c, 2).await;
            if r == "after the move" {
                Ok(())
            } else {
                Err(r)
            }
        },
    )
    .await;
    assert_eq!(
        c.psql_superuser("SELECT pg_postmaster_start_time()").await,
        started,
        "the move restarted Postgres"
    );
    // /status samples the WAL receiver (every second and after each spec):
    // it catches up with what psql saw.
    let want = format!("{}:5432", b.name);
    eventually(
        "/status to show streaming from B",
        e2e_support::START_TIMEOUT,
        || async {
            let status = c.status().await.expect("status");
            let r = &status["replication"];
            if r["streaming"] == true && r["sender"] == want.as_str() {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await;
}

/// The note of row `id` of `t` on the compute ('' when absent).
async fn row(c: &Compute, id: i32) -> String {
    c.psql_superuser(&format!(
        "SELECT coalesce((SELECT note FROM t WHERE id = {id}), '')"
    ))
    .await
}

/// `status sender_host` of the compute's WAL receiver ('' when none runs).
async fn sender(c: &Compute) -> String {
    c.psql_superuser(
        "SELECT coalesce((SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver), '')",
    )
    .await
}

/// The durable primary in containers (issue 21): three safekeepers (standby
/// containers of a bootstrap storage that is then removed), a compute
/// container that commits with their quorum, killed (`docker kill`), and a
/// second compute container elsewhere on the network that holds every
/// acknowledged row, with all three safekeepers streaming from it by their
/// container names.
#[tokio::test]
async fn a_durable_primary_in_a_container_loses_no_acknowledged_row_when_killed() {
    require_docker!("a_durable_primary_in_a_container_loses_no_acknowledged_row_when_killed");
    let tag = std::process::id();
    let network = format!("compute-ctl-e2e-durable-{tag}");
    let boot = e2e_support::Storage::start(&network, &format!("boot-{tag}"), None).await;
    boot.exec("CREATE TABLE acked (id int PRIMARY KEY); GRANT SELECT, INSERT ON acked TO PUBLIC; CHECKPOINT")
        .await;
    let mut sks = Vec::new();
    for i in 0..3 {
        sks.push(
            e2e_support::Storage::start(&network, &format!("sk{i}-{tag}"), Some(&boot.name)).await,
        );
    }
    for sk in &sks {
        eventually(
            "a safekeeper to hold the table",
            e2e_support::START_TIMEOUT,
            || async {
                let c = sk.client().await?;
                c.query_one("SELECT count(*) FROM acked", &[])
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await;
    }
    drop(boot);

    let mut spec = start_spec();
    spec["pageserver_connstring"] = json!(sks[0].connstr());
    spec["safekeeper_connstrings"] = json!(
        sks.iter()
            .map(|s| format!("{}:5432", s.name))
            .collect::<Vec<_>>()
    );
    // While it catches up the compute is a standby of a safekeeper, and a
    // standby needs max_connections at least its primary's (100 here).
    for s in spec["cluster"]["settings"].as_array_mut().unwrap() {
        if s["name"] == "max_connections" {
            s["value"] = json!("100");
        }
    }
    let start = |name: String| {
        let spec = spec.clone();
        let network = network.clone();
        async move {
            let advertise = format!("{name}:5432");
            Compute::start_on(&spec, &network, &name, &["--advertise-addr", &advertise]).await
        }
    };
    let a = start(format!("durable-a-{tag}")).await;
    let st = all_streaming(&a).await;
    assert_eq!(st["quorum"]["holds"], true, "{st}");
    let alice = alice(&a).await;
    let mut acked = Vec::new();
    for id in 0..50 {
        alice
            .execute("INSERT INTO acked VALUES ($1)", &[&id])
            .await
            .unwrap_or_else(|e| panic!("insert {id}: {e}"));
        acked.push(id);
    }
    // The node dies: no shutdown, no checkpoint, no WAL sender drained.
    e2e_support::docker(&["kill", a.container.id()])
        .await
        .expect("docker kill the compute");

    let b = start(format!("durable-b-{tag}")).await;
    let count = b
        .psql_superuser(&format!(
            "SELECT count(*) FROM acked WHERE id < {}",
            acked.len()
        ))
        .await;
    assert_eq!(count, acked.len().to_string(), "acknowledged rows lost");
    let st = all_streaming(&b).await;
    assert!(
        st["quorum"]["timeline"].as_u64() > Some(1),
        "the new compute forked a new timeline: {st}"
    );
}

/// Waits until `/status` shows all three safekeepers streaming; returns it.
async fn all_streaming(c: &Compute) -> Value {
    eventually(
        "every safekeeper to stream",
        e2e_support::START_TIMEOUT,
        || async {
            let st = c.status().await?;
            let n = st["safekeepers"].as_array().map_or(0, |a| {
                a.iter().filter(|s| s["state"] == "streaming").count()
            });
            if n == 3 { Ok(st) } else { Err(st.to_string()) }
        },
    )
    .await
}
