//! Issue 24's leftovers: a setting's value is checked against the binary
//! in use before anything is written. What `--describe-config` does not
//! list (an enum's values, a number's units and the range of a value with
//! a unit) is asked of the binary itself; a refusal is a 400 naming the
//! setting and, in Postgres' words, what it takes. A launch spec (`-S`, or
//! the control plane's) goes through the same check before Postgres starts.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::control_plane::{FakeControlPlane, Reply};
use crate::support::fixture;

pub(crate) fn with_setting(op: &str, name: &str, value: &str, vartype: &str) -> Value {
    let mut s = fixture("spec.json");
    s["operation_uuid"] = op.into();
    s["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "value": value, "vartype": vartype}));
    s
}

#[tokio::test]
async fn enum_values_units_and_ranges_are_refused_before_anything_is_written() {
    crate::need_postgres!();
    let mut start = fixture("spec.json");
    start["operation_uuid"] = "op-start".into();
    let c = Compute::start(ComputeOpts::with_spec(start));
    c.wait_running().await;
    let conf = std::fs::read_to_string(c.pgdata.join("postgresql.conf")).unwrap();
    let n = fixture("spec.json")["cluster"]["settings"]
        .as_array()
        .unwrap()
        .len();
    let path = format!("$.cluster.settings[{n}].value");
    for (name, value, vartype, says) in [
        (
            "log_min_messages",
            "chatty",
            "enum",
            "Available values: debug5",
        ),
        (
            "work_mem",
            "4ms",
            "string",
            "Valid units for this parameter are",
        ),
        ("work_mem", "32kB", "string", "outside the valid range"),
    ] {
        let spec = with_setting("op-bad", name, value, vartype);
        let r = c.configure(&spec, None).await;
        assert_eq!(r.status, 400, "{name} = {value}: {}", r.text);
        let body = r.json();
        let problem = body["problems"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["path"] == path.as_str()))
            .unwrap_or_else(|| panic!("no problem at {path}: {body}"));
        let message = problem["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("refuses {name} = '{value}'")) && message.contains(says),
            "{message}"
        );
        // The dry run reports the same problem.
        let r = c
            .client
            .post(c.url("/configure?dry_run=true"))
            .json(&json!({ "spec": spec }))
            .send()
            .await
            .expect("dry run");
        let dry: Value = r.json().await.expect("dry run body");
        assert_eq!(dry["valid"], false, "{dry}");
        assert!(dry.to_string().contains(says), "{dry}");
    }
    // Nothing was written, and a good value still goes through.
    assert_eq!(
        std::fs::read_to_string(c.pgdata.join("postgresql.conf")).unwrap(),
        conf
    );
    assert_eq!(c.status().await["operation_uuid"], "op-start");
    let ok = with_setting("op-good", "log_min_messages", "notice", "enum");
    let r = c.configure(&ok, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.sql_value("SHOW log_min_messages").await, "notice");
    // The refusals above taught compute_ctl work_mem's unit: a notify with a
    // new plain value runs no `postgres` process to judge it, and takes.
    let before = judged_by_binary(&c).await;
    for (op, value) in [("op-mem-1", "5MB"), ("op-mem-2", "6145kB")] {
        let mut spec = with_setting(op, "work_mem", value, "string");
        spec["skip_pg_catalog_updates"] = true.into();
        let r = c.configure(&spec, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(c.sql_value("SHOW work_mem").await, value);
    }
    assert_eq!(
        judged_by_binary(&c).await,
        before,
        "a plain work_mem value was judged by a postgres process"
    );
    // One the binary must judge (a fraction Postgres rounds) still is.
    let r = c
        .configure(
            &with_setting("op-mem-3", "work_mem", "1.5MB", "string"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(judged_by_binary(&c).await, before + 1);
}

/// The judged-by-binary counter of `/metrics`.
pub(crate) async fn judged_by_binary(c: &Compute) -> u64 {
    let m = c.get("/metrics").await.text;
    m.lines()
        .find_map(|l| l.strip_prefix("compute_ctl_settings_judged_by_binary_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no settings_judged_by_binary counter in {m}"))
}

/// A start whose memory settings are plain numbers with units asks the
/// binary once per setting, for its unit, and judges the values itself
/// (these processes run beside the base backup). A value the unit does
/// not settle (out of range) is still asked, and refused in Postgres'
/// words.
#[tokio::test]
async fn a_start_learns_each_unit_once_and_judges_plain_values_itself() {
    crate::need_postgres!();
    // The fixture has `shared_buffers = 128MB` and an enum
    // (`password_encryption`); this adds a second memory setting.
    let spec = with_setting("op-units", "maintenance_work_mem", "96MB", "string");
    let c = Compute::start(ComputeOpts::with_spec(spec));
    c.wait_running().await;
    assert_eq!(c.sql_value("SHOW maintenance_work_mem").await, "96MB");
    assert_eq!(c.sql_value("SHOW shared_buffers").await, "128MB");
    // Two units learnt, one enum value judged; no process for 128MB or 96MB.
    let after_start = judged_by_binary(&c).await;
    assert_eq!(after_start, 3, "processes asked at start");
    // A second spec with the same names and a new plain value spawns nothing.
    let again = with_setting("op-units-2", "maintenance_work_mem", "80MB", "string");
    let r = c.configure(&again, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(judged_by_binary(&c).await, after_start);
    // Out of range: the unit does not settle it, the binary refuses it.
    let bad = with_setting("op-units-3", "maintenance_work_mem", "1kB", "string");
    let r = c.configure(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("outside the valid range"), "{}", r.text);
    assert_eq!(judged_by_binary(&c).await, after_start + 1);
}

#[tokio::test]
async fn a_spec_file_with_a_bad_value_fails_before_postgres_starts() {
    crate::need_postgres!();
    let spec = with_setting("op-file", "wal_level", "archive-ish", "enum");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let c = Compute::start(ComputeOpts::without_spec().args(["-S", file.to_str().unwrap()]));
    let status = c.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = c.log();
    assert!(
        log.contains("refuses wal_level = 'archive-ish'")
            && log.contains("Available values: minimal, replica, logical")
            && log.contains("Postgres was not started"),
        "{log}"
    );
    assert!(!c.pgdata.join("PG_VERSION").exists(), "PGDATA was not made");
    assert_eq!(c.postmaster_pid(), None);
}

/// The check runs at every start, while PGDATA is made: a spec the control
/// plane serves at launch is judged too, and a refusal leaves no PGDATA and
/// no Postgres behind.
#[tokio::test]
async fn a_control_plane_spec_with_a_bad_value_fails_before_postgres_starts() {
    crate::need_postgres!();
    let spec = with_setting("op-cplane", "wal_level", "archive-ish", "enum");
    let cp = FakeControlPlane::start(
        vec![],
        Reply::Json(json!({"status": "attached", "spec": spec})),
    )
    .await;
    let c = Compute::start(ComputeOpts::without_spec().args([
        "--control-plane-uri",
        &cp.uri(),
        "--compute-id",
        "compute-bad-setting",
    ]));
    let status = c.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = c.log();
    assert!(
        log.contains("refuses wal_level = 'archive-ish'")
            && log.contains("Postgres was not started"),
        "{log}"
    );
    assert!(
        !c.pgdata.join("PG_VERSION").exists(),
        "the PGDATA made meanwhile was removed"
    );
    assert_eq!(c.postmaster_pid(), None);
}
