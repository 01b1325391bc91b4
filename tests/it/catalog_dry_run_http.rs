//! `POST /configure?dry_run=true` on the real binary: the plan, the
//! settings diff and the reload/restart judgement; nothing written, no
//! reload, no catalog change; the skip flag; an invalid spec; a dry run
//! while another configure is in flight. Every answer is checked against
//! `openapi.yaml`.
#![allow(clippy::disallowed_methods)]

use crate::support;
use crate::support::openapi;

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts, Reply};
use crate::support::fixture_op;
use serde_json::{Value, json};

fn conforms(r: &Reply) {
    let mut api = openapi::OpenApi::load();
    let seen = openapi::Seen {
        method: "POST",
        path: "/configure",
        status: r.status,
        content_type: r.content_type.as_deref(),
        request_id: r.request_id.as_deref(),
        body: &r.text,
    };
    if let Err(e) = api.check(&seen) {
        panic!("{e}");
    }
}

async fn dry_run(p: &Compute, query: &str, spec: &Value) -> Reply {
    let r = p
        .client
        .post(p.url(&format!("/configure?{query}")))
        .json(&json!({ "spec": spec }))
        .send()
        .await
        .expect("POST /configure?dry_run");
    Reply::read(r).await
}

fn with_settings(op: &str, settings: &[(&str, &str)]) -> Value {
    let mut s = fixture_op("spec_minimal.json", op);
    s["cluster"]["settings"] = settings
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v, "vartype": "string"}))
        .collect();
    s
}

async fn status_changes(p: &Compute) -> usize {
    p.log().matches("status change").count()
}

/// What a configure would change in `/status` (not `last_active`, which
/// the test's own sessions move).
async fn configured(p: &Compute) -> Value {
    let s = p.status().await;
    json!([s["status"], s["operation_uuid"], s["pending_restart"]])
}

#[tokio::test]
async fn a_dry_run_shows_the_plan_and_the_restart_and_changes_nothing() {
    crate::need_postgres!();
    let first = with_settings("op-1", &[("work_mem", "4MB"), ("shared_buffers", "128MB")]);
    let p = Compute::serving(ComputeOpts::with_spec(first)).await;
    p.wait_running().await;
    let conf = p.pgdata.join("postgresql.conf");
    let conf_before = std::fs::read(&conf).expect("postgresql.conf");
    let status_before = configured(&p).await;
    let changes_before = status_changes(&p).await;

    let mut next = with_settings("op-2", &[("work_mem", "64MB"), ("shared_buffers", "256MB")]);
    next["cluster"]["roles"] = json!([{"name": "dry", "encrypted_password": support::md5_hex("pw", "dry"),
        "options": [{"name": "createdb", "value": "true", "vartype": "bool"}]}]);
    let r = dry_run(&p, "dry_run=true", &next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    conforms(&r);
    let v = r.json();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["status"], "running");
    assert_eq!(v["apply"], "restart", "{v}");
    assert_eq!(v["restart_required"], json!(["shared_buffers"]));
    let changed: Vec<(&str, &str, &str)> = v["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["old"].as_str().unwrap_or(""),
                s["new"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("shared_buffers", "128MB", "256MB"),
            ("work_mem", "4MB", "64MB")
        ]
    );
    assert_eq!(v["statement_count"], 1);
    assert_eq!(
        v["catalog"]["statements"],
        json!([{"database": "postgres", "sql": r#"CREATE ROLE "dry" WITH LOGIN PASSWORD <redacted> CREATEDB"#}])
    );
    assert!(!r.text.contains(&support::md5_hex("pw", "dry")));

    assert_eq!(
        std::fs::read(&conf).expect("conf"),
        conf_before,
        "no file written"
    );
    assert_eq!(configured(&p).await, status_before, "no state change");
    assert_eq!(status_changes(&p).await, changes_before, "no status change");
    assert_eq!(
        p.sql_value("SELECT count(*) FROM pg_roles WHERE rolname = 'dry'")
            .await,
        "0"
    );

    // The skip flag: no catalog plan (no session at all), a reload.
    let mut skip = with_settings("op-3", &[("work_mem", "8MB"), ("shared_buffers", "128MB")]);
    skip["skip_pg_catalog_updates"] = json!(true);
    skip["cluster"]["roles"] = next["cluster"]["roles"].clone();
    let v = dry_run(&p, "dry_run=true", &skip).await.json();
    assert_eq!(v["catalog"]["skipped"], true);
    assert_eq!(v["catalog"]["statements"], json!([]));
    assert_eq!(
        (v["apply"].as_str(), v["statement_count"].as_u64()),
        (Some("reload"), Some(0))
    );

    // An invalid spec: 200 with its problems, and no plan.
    let mut bad = next.clone();
    bad["cluster"]["roles"][0]["options"] =
        json!([{"name": "superuser", "value": "true", "vartype": "bool"}]);
    let r = dry_run(&p, "dry_run=true", &bad).await;
    assert_eq!(r.status, 200);
    conforms(&r);
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["problems"][0]["path"],
        "$.cluster.roles[0].options[0].name"
    );

    // A query string that is not a boolean is refused, nothing is applied.
    let r = dry_run(&p, "dry_run=maybe", &next).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(configured(&p).await, status_before);

    // While a configure with real work is in flight, a dry run still answers.
    let text =
        std::fs::read_to_string(support::repo_file("fixtures/spec_many.json")).expect("fixture");
    let mut many: Value = serde_json::from_str(&text).expect("parses");
    many["operation_uuid"] = json!("op-many");
    let in_flight = p.spawn_configure(&many);
    p.wait_until(
        "the configure to be under way",
        Duration::from_secs(30),
        async |p| p.status().await["status"] == "configuration",
    )
    .await;
    let r = dry_run(&p, "dry_run=true", &next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["catalog"]["error"].is_null(), "{v}");
    let done = in_flight.await.expect("configure task");
    assert_eq!(done.status, 200, "{}", done.text);
}
