//! The version smoke: the release paths of compute_ctl on the Postgres of
//! `PGBIN_DIR` (Debian's 15 by default; `just test` runs it again on 16, 17
//! and 18 from `scripts/install-pg.sh`). Lean on purpose: one primary
//! compute for start, catalog with hostile names, dry run, the two
//! settings defects of issue 24 (an unknown setting is a 400 naming the
//! major; a value Postgres refuses after the reload is a 500 with its own
//! words and a rollback), notify, reconfigure and terminate; and one replica
//! moved between two storages. Per major: data checksums on after initdb
//! (the default only from 18), a base backup keeping its source's setting,
//! and 18's `io_method` (unknown before 18; a restart pending on 18).

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::postgres::TestPostgres;
use crate::support::{fixture, pg_major, query_value};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(30);
/// A role and a database whose names need every kind of quoting.
const HOSTILE_ROLE: &str = "smoke \"quoted\" 'role'; DROP ROLE x; --";
const HOSTILE_DB: &str = "smoke db $1 \\ \"x\"";

fn opt(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value, "vartype": "string"})
}

fn role(name: &str, options: Vec<Value>) -> Value {
    json!({"name": name, "encrypted_password": null, "options": options})
}

/// The statements a dry run of `spec` plans now.
async fn planned(c: &Compute, spec: &Value) -> Value {
    let dry = c
        .client
        .post(c.url("/configure?dry_run=true"))
        .json(&json!({"spec": spec}))
        .send()
        .await
        .expect("dry run");
    let dry: Value = dry.json().await.expect("dry run JSON");
    assert_eq!(dry["valid"], true, "{dry}");
    dry
}

fn setting(name: &str, value: &str, vartype: &str) -> Value {
    json!({"name": name, "value": value, "vartype": vartype})
}

fn with_setting(spec: &Value, op: &str, extra: Value) -> Value {
    let mut s = spec.clone();
    s["operation_uuid"] = op.into();
    s["cluster"]["settings"]
        .as_array_mut()
        .expect("settings")
        .push(extra);
    s
}

/// A setting this major does not have: `summarize_wal` came in 17,
/// `old_snapshot_threshold` left in 17.
fn missing_setting(major: u32) -> &'static str {
    if major >= 17 {
        "old_snapshot_threshold"
    } else {
        "summarize_wal"
    }
}

async fn show(c: &Compute, name: &str) -> String {
    c.sql_value(&format!("SHOW {name}")).await
}

#[tokio::test]
async fn a_primary_on_this_major_starts_configures_refuses_bad_settings_and_terminates() {
    crate::need_postgres!();
    let major = pg_major();
    let mut start = fixture("spec.json");
    start["operation_uuid"] = "smoke-start".into();
    start["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": HOSTILE_ROLE, "encrypted_password": null, "options": null}));
    start["cluster"]["databases"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": HOSTILE_DB, "owner": HOSTILE_ROLE, "options": null}));
    let c = Compute::start(ComputeOpts::with_spec(start.clone()));
    let client = c.wait_running().await;
    let version: String = query_value(&client, "SHOW server_version_num")
        .await
        .expect("server_version_num");
    assert_eq!(
        version[..2].parse::<u32>().unwrap(),
        major,
        "the major of PGBIN_DIR runs"
    );
    // Catalog with hostile names: the role owns the database.
    let owner = client
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&HOSTILE_DB],
        )
        .await
        .expect("the hostile database exists")
        .get::<_, String>(0);
    assert_eq!(owner, HOSTILE_ROLE);
    assert_eq!(
        show(&c, "data_checksums").await,
        "on",
        "a fresh PGDATA has data checksums on {major} (initdb's default only from 18)"
    );

    // Defect 1, before writing: a setting this major lacks is a 400 that
    // names the JSON path and the major; the dry run says the same.
    let missing = missing_setting(major);
    let bad = with_setting(&start, "smoke-unknown", setting(missing, "on", "bool"));
    let index = bad["cluster"]["settings"].as_array().unwrap().len() - 1;
    let path = format!("$.cluster.settings[{index}].name");
    let dry = c
        .client
        .post(c.url("/configure?dry_run=true"))
        .json(&json!({"spec": bad}))
        .send()
        .await
        .expect("dry run");
    let dry: Value = dry.json().await.expect("dry run JSON");
    assert_eq!(dry["valid"], false, "{dry}");
    let problem = &dry["problems"][0];
    assert_eq!(problem["path"], path, "{dry}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains(&format!("PostgreSQL {major} has no setting \"{missing}\"")),
        "{dry}"
    );
    let r = c.configure(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains(&path), "{}", r.text);
    let st = c.status().await;
    assert_eq!(st["status"], "running");
    assert_eq!(st["operation_uuid"], "smoke-start", "nothing changed");

    // An enum's value the binary refuses: a 400 naming the setting and the
    // allowed values (asked of `postgres -C` before anything is written).
    let bad_enum = with_setting(
        &start,
        "smoke-enum",
        setting("log_min_messages", "bogus", "enum"),
    );
    let r = c.configure(&bad_enum, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("log_min_messages") && r.text.contains("Available values:"),
        "{}",
        r.text
    );
    assert_eq!(c.status().await["operation_uuid"], "smoke-start");

    // Defect 1, after loading: a value only the running server can judge
    // (a string its check hook refuses: a time zone it does not have) is
    // refused by Postgres; the previous config comes back, 500 with
    // Postgres' words, /status and the metric say so.
    let before = show(&c, "timezone").await;
    let refused = with_setting(
        &start,
        "smoke-refused",
        setting("timezone", "Mars/Olympus_Mons", "string"),
    );
    let r = c.configure(&refused, None).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.to_lowercase().contains("timezone"), "{}", r.text);
    assert!(
        r.text.contains("setting could not be applied"),
        "{}",
        r.text
    );
    let st = c.status().await;
    assert_eq!(
        st["config_refused"]["operation_uuid"], "smoke-refused",
        "{st}"
    );
    assert_eq!(st["config_refused"]["rolled_back"], true, "{st}");
    assert_eq!(
        st["operation_uuid"], "smoke-start",
        "the spec in effect is the previous one"
    );
    let conf = std::fs::read_to_string(c.pgdata.join("postgresql.conf")).unwrap();
    assert!(
        !conf.contains("Olympus"),
        "the previous postgresql.conf is back:\n{conf}"
    );
    assert_eq!(show(&c, "timezone").await, before);
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics.contains("compute_ctl_config_refused_total 1"),
        "{metrics}"
    );

    // Notify (skip flag) repairs it: 200, the setting is served, the
    // refusal is cleared.
    let mut notify = with_setting(
        &start,
        "smoke-notify",
        setting("work_mem", "12MB", "string"),
    );
    notify["skip_pg_catalog_updates"] = true.into();
    let r = c.configure(&notify, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["config_refused"], Value::Null, "{}", r.text);
    c.wait_until("work_mem 12MB", WITHIN, async |c| {
        show(c, "work_mem").await == "12MB"
    })
    .await;

    // Reconfigure with the catalog: a new role.
    let mut reconf = start.clone();
    reconf["operation_uuid"] = "smoke-reconf".into();
    reconf["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "smoke_new", "encrypted_password": null, "options": null}));
    let r = c.configure(&reconf, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        c.sql_value("SELECT count(*) FROM pg_roles WHERE rolname = 'smoke_new'")
            .await,
        "1"
    );
    // A second apply of the same catalog plans nothing.
    let mut again = reconf.clone();
    again["operation_uuid"] = "smoke-again".into();
    let dry = planned(&c, &again).await;
    assert_eq!(dry["statement_count"], 0, "{dry}");

    memberships_with_several_grantors_converge(&c, &reconf, major).await;
    io_method_on_this_major(&c, &start, major).await;

    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["lsn"].is_string(), "{}", r.text);
}

#[tokio::test]
async fn a_replica_on_this_major_moves_to_another_storage_without_restart() {
    crate::need_postgres!();
    let a = TestPostgres::storage().await;
    a.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let b = TestPostgres::standby_of(&a).await;
    let mut start = fixture("spec.json");
    start["operation_uuid"] = "replica-start".into();
    start["mode"] = json!("Replica");
    start["pageserver_connstring"] = a.connstr().into();
    let c = Compute::start(ComputeOpts::with_spec(start.clone()));
    c.wait_running().await;
    let pid = c.postmaster_pid().expect("a postmaster");
    // Checksums are fixed per cluster: a base backup keeps its source's
    // (the test storage's initdb takes the major's default: off before 18).
    let source_checksums = a.value("SHOW data_checksums").await;
    assert_eq!(
        source_checksums,
        if pg_major() >= 18 { "on" } else { "off" }
    );
    assert_eq!(show(&c, "data_checksums").await, source_checksums);
    let mut moved = start.clone();
    moved["operation_uuid"] = "replica-move".into();
    moved["skip_pg_catalog_updates"] = true.into();
    moved["pageserver_connstring"] = b.connstr().into();
    let r = c.configure(&moved, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let want = format!("streaming {}", b.port);
    c.wait_until(
        "the WAL receiver to stream from B",
        WITHIN,
        async |c| match c.connect().await {
            Ok(client) => {
                query_value(
                    &client,
                    "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver",
                )
                .await
                .as_deref()
                    == Some(want.as_str())
            }
            Err(_) => false,
        },
    )
    .await;
    a.exec("INSERT INTO t VALUES (2)").await;
    // B itself must have row 2 before C can: a B that does not stream from
    // A is the test's storage failing, not the compute (say which).
    let b_has_it = crate::support::poll_until(WITHIN, || async {
        (b.value("SELECT count(*) FROM t").await == "2").then_some(())
    })
    .await;
    assert!(
        b_has_it.is_some(),
        "storage B (a standby of A) never replayed row 2 within {WITHIN:?}; its log:\n{}",
        b.log()
    );
    c.wait_until("row 2 through B", WITHIN, async |c| {
        match c.connect().await {
            Ok(client) => {
                query_value(&client, "SELECT count(*) FROM t")
                    .await
                    .as_deref()
                    == Some("2")
            }
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(c.postmaster_pid(), Some(pid), "moved without a restart");
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Defect 2 of issue 24: since 16 `pg_auth_members` keeps one row per
/// grantor; a revoke must remove every grant, and a second plan is empty.
/// Also 16's `CREATEROLE`: the creator's `ADMIN OPTION` on a role it
/// created is not a membership to revoke.
async fn memberships_with_several_grantors_converge(c: &Compute, base: &Value, major: u32) {
    let mut spec = base.clone();
    spec["operation_uuid"] = "smoke-members".into();
    let roles = spec["cluster"]["roles"].as_array_mut().unwrap();
    roles.push(role("smoke_group", vec![]));
    roles.push(role("smoke_granter", vec![]));
    roles.push(role("smoke_member", vec![opt("in_role", "smoke_group")]));
    roles.push(role(
        "smoke_creator",
        vec![opt("createrole", "true"), opt("in_role", "")],
    ));
    let r = c.configure(&spec, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Another role grants the same membership, as a user would by hand;
    // and the creator makes a role of its own.
    let admin = c.sql("postgres", "smoke-admin").await;
    admin
        .batch_execute(
            "GRANT smoke_group TO smoke_granter WITH ADMIN OPTION; \
             SET ROLE smoke_granter; GRANT smoke_group TO smoke_member; RESET ROLE; \
             SET ROLE smoke_creator; CREATE ROLE smoke_made; RESET ROLE",
        )
        .await
        .expect("grants by hand");
    let grants = |sql: &'static str| async move { c.sql_value(sql).await };
    let rows =
        grants("SELECT count(*) FROM pg_auth_members WHERE member = 'smoke_member'::regrole").await;
    assert_eq!(
        rows,
        if major >= 16 { "2" } else { "1" },
        "grants of smoke_member on {major}"
    );
    // The same spec: nothing to do (the membership is there, once; the
    // creator's admin option is not drift).
    let mut same = spec.clone();
    same["operation_uuid"] = "smoke-members-again".into();
    let dry = planned(c, &same).await;
    assert_eq!(dry["statement_count"], 0, "{dry}");

    // The revoke: in_role empty removes every grant, whoever granted it.
    let mut revoke = spec.clone();
    revoke["operation_uuid"] = "smoke-members-revoke".into();
    for r in revoke["cluster"]["roles"].as_array_mut().unwrap() {
        if r["name"] == "smoke_member" {
            r["options"] = json!([opt("in_role", "")]);
        }
    }
    let r = c.configure(&revoke, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        grants("SELECT count(*) FROM pg_auth_members WHERE member = 'smoke_member'::regrole").await,
        "0",
        "every grant revoked on {major}"
    );
    let mut again = revoke.clone();
    again["operation_uuid"] = "smoke-members-revoke-again".into();
    let dry = planned(c, &again).await;
    assert_eq!(
        dry["statement_count"], 0,
        "a second plan is empty on {major}: {dry}"
    );
    let made = grants(
        "SELECT count(*) FROM pg_auth_members WHERE member = 'smoke_creator'::regrole \
         AND roleid = 'smoke_made'::regrole",
    )
    .await;
    assert_eq!(
        made,
        if major >= 16 { "1" } else { "0" },
        "the creator's admin option stays on {major}"
    );
}

/// Whether the binaries of `PGBIN_DIR` were built with io_uring (18's
/// `io_method = io_uring`), as `pg_config --configure` says.
fn built_with_liburing() -> bool {
    let out = std::process::Command::new(crate::support::pg_tool("pg_config"))
        .arg("--configure")
        .output()
        .expect("run pg_config --configure");
    String::from_utf8_lossy(&out.stdout).contains("--with-liburing")
}

/// 18's `io_method`: before 18 an unknown setting (400 naming the major);
/// on 18 a postmaster setting, so a change is a pending restart (the
/// postmaster keeps running with the old value), and `io_uring` is refused
/// with the values the build has when it was built without liburing.
async fn io_method_on_this_major(c: &Compute, base: &Value, major: u32) {
    let notify = |op: &str, value: &str| {
        let mut s = with_setting(base, op, setting("io_method", value, "enum"));
        s["skip_pg_catalog_updates"] = true.into();
        s
    };
    let in_effect = c.status().await["operation_uuid"].clone();
    let index = base["cluster"]["settings"].as_array().unwrap().len();
    if major < 18 {
        let r = c.configure(&notify("smoke-io-method", "sync"), None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.text
                .contains(&format!("PostgreSQL {major} has no setting"))
                && r.text.contains("io_method")
                && r.text
                    .contains(&format!("$.cluster.settings[{index}].name")),
            "{}",
            r.text
        );
        assert_eq!(c.status().await["operation_uuid"], in_effect);
        return;
    }
    let pid = c.postmaster_pid().expect("a postmaster");
    assert_eq!(show(c, "io_method").await, "worker", "18's default");
    let uring = notify("smoke-io-uring", "io_uring");
    let r = c.configure(&uring, None).await;
    if built_with_liburing() {
        assert_eq!(r.status, 200, "{}", r.text);
    } else {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.text.contains(&format!(
                "PostgreSQL {major} refuses io_method = 'io_uring'"
            )) && r.text.contains("Available values: sync, worker"),
            "{}",
            r.text
        );
        assert_eq!(c.status().await["operation_uuid"], in_effect);
    }
    let r = c.configure(&notify("smoke-io-sync", "sync"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let st = c.status().await;
    assert_eq!(st["pending_restart"], json!(["io_method"]), "{st}");
    assert_eq!(st["config_refused"], Value::Null, "{st}");
    assert_eq!(
        show(c, "io_method").await,
        "worker",
        "a postmaster setting waits for the restart"
    );
    assert_eq!(c.postmaster_pid(), Some(pid), "no restart behind our back");
    let mut back = base.clone();
    back["operation_uuid"] = "smoke-io-back".into();
    back["skip_pg_catalog_updates"] = true.into();
    let r = c.configure(&back, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.status().await["pending_restart"], json!([]));
}
