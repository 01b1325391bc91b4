//! The supervisor library in-process on the production Env and real
//! Postgres 15: a reconfigure rewrites the config, reloads by signal, and
//! reports the changed settings that need a restart (from
//! `postgres --describe-config`) instead of ignoring them.

use std::time::Duration;

use crate::support::os::processes_in;
use crate::support::supervisor::Supervisor;
use crate::support::{connect, fixture, wait_for};
use compute_ctl::compute::RunOutcome;
use serde_json::json;

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

#[tokio::test]
async fn reconfigure_reloads_and_reports_settings_that_need_a_restart() {
    let mut sup = Supervisor::start();
    let spec = fixture("spec.json");

    let st = sup.apply(spec.clone()).await;
    assert!(st.startup.prepare_pgdata_ms > 0);
    assert!(
        st.startup.total_startup_ms >= st.startup.prepare_pgdata_ms + st.startup.start_postgres_ms
    );

    // work_mem reloads; shared_buffers needs a restart.
    let spec2 = with_setting(spec, "op-2", "work_mem", "12MB");
    let spec2 = with_setting(spec2, "op-2", "shared_buffers", "64MB");
    let st = sup.apply(spec2.clone()).await;
    assert_eq!(st.pending_restart, vec!["shared_buffers".to_string()]);

    let connstr = sup.connstr();
    wait_for(
        Duration::from_secs(10),
        "work_mem to be reloaded",
        || async {
            let client = connect(&connstr).await.ok()?;
            let v: String = client.query_one("SHOW work_mem", &[]).await.ok()?.get(0);
            (v == "12MB").then_some(())
        },
    )
    .await;

    // A later reconfigure that keeps shared_buffers changed still reports it:
    // the comparison is against what Postgres was started with.
    let st = sup
        .apply(with_setting(spec2, "op-3", "work_mem", "16MB"))
        .await;
    assert_eq!(st.pending_restart, vec!["shared_buffers".to_string()]);

    assert_eq!(sup.terminate().await, RunOutcome::Terminated);
    assert!(processes_in(&sup.pgdata).is_empty());
}
