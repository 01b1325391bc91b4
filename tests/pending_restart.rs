//! The supervisor library in-process on the production Env and real
//! Postgres 15: a reconfigure rewrites the config, reloads by signal, and
//! reports the changed settings that need a restart (from
//! `postgres --describe-config`) instead of ignoring them.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use compute_ctl::compute::{
    Compute, ComputeParams, ComputeState, ConnTarget, RunOutcome, Submitted, TerminateMode,
};
use compute_ctl::env::TokioEnv;
use compute_ctl::spec::ComputeSpec;
use serde_json::json;
use support::compute::{PGBIN, kill_postgres_in, pg_port, quickstart_spec, temp_dir, wait_for};

/// Kills whatever Postgres is left in PGDATA when the test ends, even on panic.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_postgres_in(&self.0);
    }
}

/// `spec` as operation `uuid`, with setting `name` set to `value`.
fn with_setting(
    mut spec: serde_json::Value,
    uuid: &str,
    name: &str,
    value: &str,
) -> serde_json::Value {
    spec["operation_uuid"] = uuid.into();
    let settings = spec["cluster"]["settings"].as_array_mut().unwrap();
    settings.retain(|s| s["name"] != name);
    settings.push(json!({"name": name, "value": value, "vartype": "string"}));
    spec
}

/// Submits `spec` and waits until it is applied.
async fn apply(compute: &Compute<TokioEnv>, spec: serde_json::Value) -> ComputeState {
    let spec: ComputeSpec = serde_json::from_value(spec).unwrap();
    match compute.submit(spec).unwrap() {
        Submitted::Accepted(g) => compute.wait_applied(g).await.expect("applied"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reconfigure_reloads_and_reports_settings_that_need_a_restart() {
    let dir = temp_dir();
    let pgdata = dir.path().join("pgdata");
    let _cleanup = Cleanup(pgdata.clone());
    let port = pg_port();
    let params = ComputeParams {
        pgdata: pgdata.clone(),
        pgbin: PGBIN.into(),
        conn: ConnTarget::parse(&format!(
            "postgresql://cloud_admin@127.0.0.1:{port}/postgres"
        ))
        .unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        compute_id: None,
        ready_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_secs(10),
        activity_interval: Duration::from_secs(5),
    };
    let compute = Compute::new(TokioEnv::new(), params);
    let runner = {
        let c = compute.clone();
        tokio::spawn(async move { c.run().await })
    };

    let st = apply(&compute, quickstart_spec()).await;
    assert!(st.startup.prepare_pgdata_ms > 0);
    assert!(
        st.startup.total_startup_ms >= st.startup.prepare_pgdata_ms + st.startup.start_postgres_ms
    );

    // work_mem reloads; shared_buffers needs a restart.
    let spec2 = with_setting(quickstart_spec(), "op-2", "work_mem", "12MB");
    let spec2 = with_setting(spec2, "op-2", "shared_buffers", "64MB");
    let st = apply(&compute, spec2.clone()).await;
    assert_eq!(st.pending_restart, vec!["shared_buffers".to_string()]);

    let connstr = format!("host=127.0.0.1 port={port} user=cloud_admin dbname=postgres");
    wait_for(
        Duration::from_secs(10),
        "work_mem to be reloaded",
        || async {
            let (client, conn) = tokio_postgres::connect(&connstr, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            let v: String = client.query_one("SHOW work_mem", &[]).await.ok()?.get(0);
            (v == "12MB").then_some(())
        },
    )
    .await;

    // A later reconfigure that keeps shared_buffers changed still reports it:
    // the comparison is against what Postgres was started with.
    let st = apply(&compute, with_setting(spec2, "op-3", "work_mem", "16MB")).await;
    assert_eq!(st.pending_restart, vec!["shared_buffers".to_string()]);

    compute.request_terminate(TerminateMode::Fast).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("terminates")
        .unwrap();
    assert_eq!(outcome, RunOutcome::Terminated);
    assert!(support::compute::processes_in(&pgdata).is_empty());
}
