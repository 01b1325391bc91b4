//! `skip_pg_catalog_updates`, observed from Postgres itself: the supervisor
//! library in-process on the production Env and real Postgres 15 (the same
//! code the binary runs; the HTTP route only calls `submit`). With
//! `log_connections=on` and the logging collector writing `pg.log`, a
//! reconfigure with the flag that also changes a password and a setting
//! makes the setting visible while the password stays and exactly one
//! supervisor session (`application_name=compute_ctl`) appears: the one
//! `pg_file_settings` check after the reload (issue 24), no catalog session;
//! without the flag the password changes. At start the flag leaves the roles uncreated.

use crate::support;

use std::path::Path;
use std::time::Duration;

use crate::support::supervisor::Supervisor;
use crate::support::{fixture, md5_hex, wait_for};
use compute_ctl::compute::RunOutcome;
use serde_json::json;

/// `fixtures/spec.json` as operation `uuid`, with alice's password, work_mem
/// and the skip flag as given, and Postgres logging to `PGDATA/log/pg.log`.
fn spec(uuid: &str, skip: bool, alice_password: &str, work_mem: &str) -> serde_json::Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = uuid.into();
    s["skip_pg_catalog_updates"] = skip.into();
    s["cluster"]["roles"][0]["encrypted_password"] = md5_hex(alice_password, "alice").into();
    let settings = s["cluster"]["settings"].as_array_mut().unwrap();
    let set = [
        "logging_collector",
        "log_filename",
        "log_connections",
        "work_mem",
    ];
    settings.retain(|x| !set.iter().any(|n| x["name"] == *n));
    settings.extend([
        json!({"name": "logging_collector", "value": "on", "vartype": "bool"}),
        json!({"name": "log_filename", "value": "pg.log", "vartype": "string"}),
        json!({"name": "log_connections", "value": "on", "vartype": "bool"}),
        json!({"name": "work_mem", "value": work_mem, "vartype": "string"}),
    ]);
    s
}

fn pg_log(pgdata: &Path) -> String {
    std::fs::read_to_string(pgdata.join("log/pg.log")).unwrap_or_default()
}

/// Supervisor sessions Postgres logged so far.
fn supervisor_sessions(pgdata: &Path) -> usize {
    pg_log(pgdata)
        .lines()
        .filter(|l| {
            l.contains("connection authorized") && l.contains("application_name=compute_ctl")
        })
        .count()
}

/// A test session with a unique application_name; once its own
/// "connection authorized" line is in the log, everything logged before
/// it is too. Returns alice's stored password and `work_mem`.
async fn observe(port: u16, pgdata: &Path, marker: &str) -> (Option<String>, String) {
    let connstr = format!(
        "host=127.0.0.1 port={port} user=cloud_admin dbname=postgres application_name={marker}"
    );
    let client = support::connect(&connstr).await.expect("test session");
    let pw = client
        .query_opt(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'",
            &[],
        )
        .await
        .expect("read alice")
        .and_then(|r| r.get::<_, Option<String>>(0));
    let work_mem: String = client
        .query_one("SHOW work_mem", &[])
        .await
        .expect("show")
        .get(0);
    let needle = format!("application_name={marker}");
    wait_for(Duration::from_secs(10), "the log to catch up", || async {
        pg_log(pgdata).contains(&needle).then_some(())
    })
    .await;
    (pw, work_mem)
}

#[tokio::test]
async fn skip_flag_does_no_catalog_work_at_start_and_on_reconfigure() {
    let mut sup = Supervisor::start();
    let (port, pgdata) = (sup.port, sup.pgdata.clone());

    // Start with the flag: Postgres runs, no role of the spec is created.
    sup.apply(spec("op-1", true, "first", "4MB")).await;
    let (pw, _) = observe(port, &pgdata, "probe1").await;
    assert_eq!(pw, None, "alice must not exist after a start with the flag");
    let probes = supervisor_sessions(&pgdata);

    // Without the flag: the reload check and the catalog apply (two more
    // supervisor sessions at least).
    let st = sup.apply(spec("op-2", false, "first", "4MB")).await;
    let (pw, _) = observe(port, &pgdata, "probe2").await;
    assert_eq!(pw, Some(format!("md5{}", md5_hex("first", "alice"))));
    let after_apply = supervisor_sessions(&pgdata);
    assert!(
        after_apply >= probes + 2,
        "the catalog apply opened a session:\n{}",
        pg_log(&pgdata)
    );
    assert!(st.last_reconfigure.expect("timings").catalog_statements > 0);

    // The notify path: flag set, password and setting changed.
    let st = sup.apply(spec("op-3", true, "second", "12MB")).await;
    let timings = st.last_reconfigure.expect("timings");
    assert!(timings.skip_pg_catalog_updates);
    assert_eq!(timings.catalog_statements, 0);
    wait_for(
        Duration::from_secs(10),
        "work_mem to be reloaded",
        || async {
            let (_, wm) = observe(port, &pgdata, "probe3").await;
            (wm == "12MB").then_some(())
        },
    )
    .await;
    let (pw, _) = observe(port, &pgdata, "probe4").await;
    assert_eq!(
        pw,
        Some(format!("md5{}", md5_hex("first", "alice"))),
        "password unchanged"
    );
    assert_eq!(
        supervisor_sessions(&pgdata),
        after_apply,
        "a reconfigure with the flag opens no supervisor session (its pg_file_settings check runs on the held one):\n{}",
        pg_log(&pgdata)
    );

    // The same spec without the flag changes the password.
    // Postgres ends the held session (an operator's pg_terminate_backend):
    // the next notify notices, opens one new session for its check, and
    // applies.
    let admin = support::connect(&format!(
        "host=127.0.0.1 port={port} user=cloud_admin dbname=postgres application_name=admin"
    ))
    .await
    .expect("admin session");
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (SELECT pid \
             FROM pg_stat_activity WHERE application_name = 'compute_ctl' OFFSET 0) held",
            &[],
        )
        .await
        .expect("terminate the held session")
        .get(0);
    assert_eq!(ended, 1, "one held supervisor session between reconfigures");
    let before = supervisor_sessions(&pgdata);
    sup.apply(spec("op-3b", true, "second", "16MB")).await;
    let (_, wm) = observe(port, &pgdata, "probe4b").await;
    assert_eq!(wm, "16MB");
    assert_eq!(supervisor_sessions(&pgdata), before + 1);

    sup.apply(spec("op-4", false, "second", "12MB")).await;
    let (pw, _) = observe(port, &pgdata, "probe5").await;
    assert_eq!(pw, Some(format!("md5{}", md5_hex("second", "alice"))));
    assert!(supervisor_sessions(&pgdata) > after_apply);

    assert_eq!(sup.terminate().await, RunOutcome::Terminated);
}
