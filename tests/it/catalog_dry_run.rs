//! Dry runs against a real Postgres 15: the predicted plan is exactly what
//! the apply then sends (Postgres' own `log_statement = all`), a dry run
//! writes nothing, and `compute_ctl --plan` prints the same plan.

use crate::support;

use crate::support::postgres::TestPostgres;
use compute_ctl::catalog;
use compute_ctl::env::TokioEnv;
use compute_ctl::metrics::Metrics;
use compute_ctl::spec::ComputeSpec;

/// Logs every statement with the sending application's name first.
const LOG_ALL: &[(&str, &str)] = &[("log_statement", "all"), ("log_line_prefix", "%a|")];

/// Statements compute_ctl's sessions sent, in log order, from line `from`
/// on: passwords redacted as the plan shows them, the read-only snapshot
/// queries and session settings left out.
fn sent(pg: &TestPostgres, from: usize) -> Vec<String> {
    let log = pg.log();
    let mut out: Vec<String> = Vec::new();
    let mut in_ours = false;
    for line in log.lines().skip(from) {
        if let Some(sql) = line.strip_prefix("compute_ctl|LOG:  statement: ") {
            out.push(sql.to_string());
            in_ours = true;
        } else if in_ours && line.starts_with('\t') {
            // A statement that spans lines (a name with a newline).
            if let Some(last) = out.last_mut() {
                last.push('\n');
                last.push_str(&line[1..]);
            }
        } else {
            in_ours = false;
        }
    }
    out.into_iter()
        .filter(|s| {
            s.as_str() != catalog::SNAPSHOT_SQL
                && s.as_str() != catalog::EXTENSIONS_SQL
                && s.as_str() != catalog::READ_ONLY_SQL
        })
        .map(|s| redact(&s))
        .collect()
}

/// `PASSWORD '...'` as the redacted renderer writes it.
fn redact(sql: &str) -> String {
    match sql.find(" PASSWORD '") {
        Some(at) => {
            let rest = &sql[at + " PASSWORD '".len()..];
            let end = rest.find('\'').map_or(rest.len(), |e| e + 1);
            format!("{} PASSWORD <redacted>{}", &sql[..at], &rest[end..])
        }
        None => sql.to_string(),
    }
}

fn lines(pg: &TestPostgres) -> usize {
    pg.log().lines().count()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn preview(pg: &TestPostgres, spec: &ComputeSpec) -> catalog::Preview {
    catalog::preview(&TokioEnv::new(), &pg.target("postgres"), spec)
        .await
        .unwrap_or_else(|e| panic!("preview: {e}"))
}

async fn apply(pg: &TestPostgres, spec: &ComputeSpec) -> catalog::CatalogReport {
    catalog::apply(
        &TokioEnv::new(),
        &pg.params(),
        spec,
        &catalog::Progress::new(&Metrics::new(), "reconfigure"),
    )
    .await
    .unwrap_or_else(|e| panic!("apply: {e}"))
}

/// Predicts, checks that predicting changed nothing, applies, and checks
/// that the apply sent exactly the predicted statements.
async fn predicted_equals_sent(pg: &TestPostgres, spec: &ComputeSpec) -> usize {
    let before = pg.snapshot().await;
    let mark = lines(pg);
    let plan = preview(pg, spec).await;
    assert_eq!(pg.snapshot().await, before, "a dry run changes nothing");
    assert!(
        sent(pg, mark).is_empty(),
        "a dry run sends only reads: {:?}",
        sent(pg, mark)
    );
    let mark = lines(pg);
    let report = apply(pg, spec).await;
    assert_eq!(report.failed, 0);
    let sent = sent(pg, mark);
    let predicted: Vec<String> = plan.statements.iter().map(|s| s.sql.clone()).collect();
    assert_eq!(report.executed as usize, predicted.len(), "{report:?}");
    // Sessions run concurrently, so compare as multisets.
    assert_eq!(sorted(sent), sorted(predicted));
    assert!(
        preview(pg, spec).await.statements.is_empty(),
        "after the apply, nothing is left to do"
    );
    plan.statements.len()
}

/// The shape of the benchmark's large spec (`benches/compete/specs.rs`
/// `sized(1_000, 100, ..)`): md5 roles, databases owned by them.
fn benchmark_spec(roles: usize, dbs: usize) -> ComputeSpec {
    let roles_json: Vec<serde_json::Value> = (0..roles)
        .map(|i| {
            let name = format!("role_{i:05}");
            serde_json::json!({"name": name, "encrypted_password": support::md5_hex(&format!("pw{i}"), &name)})
        })
        .collect();
    let dbs_json: Vec<serde_json::Value> = (0..dbs)
        .map(|i| serde_json::json!({"name": format!("db_{i:04}"), "owner": format!("role_{:05}", i % roles)}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "format_version": 1.0,
        "cluster": {"roles": roles_json, "databases": dbs_json}
    }))
    .expect("spec")
}

#[tokio::test]
async fn the_predicted_plan_is_what_the_apply_sends() {
    let pg = TestPostgres::start(LOG_ALL).await;
    let many = benchmark_spec(1_000, 100);
    let n = predicted_equals_sent(&pg, &many).await;
    assert!(
        n >= many.cluster.roles.len() + many.cluster.databases.len(),
        "{n}"
    );

    // Every kind of work at once: deltas, options, memberships, an invalid
    // database, databases renamed and created, extensions moved.
    let pg = TestPostgres::start(LOG_ALL).await;
    let c = pg.client("postgres").await;
    for setup in [
        "CREATE ROLE old_name LOGIN; CREATE ROLE doomed LOGIN; CREATE ROLE drifted LOGIN CREATEDB",
        "CREATE DATABASE was_here",
        "CREATE DATABASE broken",
    ] {
        c.batch_execute(setup).await.expect("setup");
    }
    c.batch_execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'broken'")
        .await
        .expect("invalidate");
    pg.client("was_here")
        .await
        .batch_execute("CREATE SCHEMA s; CREATE EXTENSION hstore VERSION '1.4'")
        .await
        .expect("extension");
    let spec: ComputeSpec = serde_json::from_value(serde_json::json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [
                {"name": "new_name", "options": [{"name": "createrole", "value": "true", "vartype": "bool"}]},
                {"name": "drifted", "encrypted_password": support::md5_hex("pw", "drifted")},
                {"name": "member", "options": [{"name": "in_role", "value": "new_name", "vartype": "string"}]}],
            "databases": [
                {"name": "moved", "owner": "new_name", "options": [{"name": "CONNECTION_LIMIT", "value": "4", "vartype": "integer"}],
                 "extensions": [{"name": "hstore", "schema": "s", "version": "1.8"}]},
                {"name": "created", "owner": "member", "extensions": [{"name": "citext"}]}]},
        "delta_operations": [
            {"action": "rename_role", "name": "old_name", "new_name": "new_name"},
            {"action": "delete_role", "name": "doomed"},
            {"action": "rename_db", "name": "was_here", "new_name": "moved"}]
    }))
    .expect("spec");
    predicted_equals_sent(&pg, &spec).await;
}

#[tokio::test]
async fn the_plan_flag_prints_the_plan_and_changes_nothing() {
    let pg = TestPostgres::start(&[]).await;
    let dir = support::os::temp_dir();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(
        &spec_path,
        serde_json::json!({"format_version": 1.0, "cluster": {"roles": [
            {"name": "r", "encrypted_password": support::md5_hex("secret", "r"),
             "options": [{"name": "createdb", "value": "true", "vartype": "bool"}]}]}})
        .to_string(),
    )
    .expect("write spec");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .arg("--plan")
        .arg(&spec_path)
        .args(["-C", &pg.connstr()])
        .output()
        .expect("run compute_ctl --plan");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    // The dry-run answer's own shape (DryRunBody), as POST
    // /configure?dry_run=true gives it.
    assert_eq!(v["statement_count"], 1, "{v}");
    assert_eq!(v["apply"], "unknown", "{v}");
    assert_eq!(
        v["catalog"]["statements"][0]["sql"],
        r#"CREATE ROLE "r" WITH LOGIN PASSWORD <redacted> CREATEDB"#
    );
    assert!(!stdout.contains(&support::md5_hex("secret", "r")));
    assert!(!pg.snapshot().await.roles.iter().any(|r| r.name == "r"));

    std::fs::write(&spec_path, r#"{"format_version": 2.0, "cluster": {}}"#).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .arg("--plan")
        .arg(&spec_path)
        .args(["-C", &pg.connstr()])
        .output()
        .expect("run compute_ctl --plan");
    assert_eq!(out.status.code(), Some(2), "an invalid spec exits 2");
}
