//! Catalog apply against a real Postgres 15: the Neon fixture's hostile
//! names, idempotence, dropping a role with dependents, renaming with md5,
//! users' database settings, extensions, invalid and locked databases,
//! failures that name the statement.

use crate::support;

use crate::support::md5_hex;
use crate::support::postgres::TestPostgres;
use compute_ctl::catalog;
use compute_ctl::env::TokioEnv;
use compute_ctl::metrics::Metrics;
use compute_ctl::spec::ComputeSpec;

fn spec(json: serde_json::Value) -> ComputeSpec {
    let mut base = serde_json::json!({"format_version": 1.0, "cluster": {}});
    if let (Some(b), Some(o)) = (base.as_object_mut(), json.as_object()) {
        b.extend(o.clone());
    }
    serde_json::from_value(base).expect("test spec parses")
}

/// The Neon fixture's roles, databases and delta operations only (its
/// settings are Neon-only); `None` when the fixture is absent (the test is
/// skipped, see `support::neon`).
fn neon_spec() -> Option<ComputeSpec> {
    let text = support::neon::text("cluster_spec.json")?;
    let mut spec: ComputeSpec = serde_json::from_str(&text).expect("the Neon fixture parses");
    spec.cluster.settings = None;
    spec.cluster.postgresql_conf = None;
    Some(spec)
}

async fn apply(
    pg: &TestPostgres,
    spec: &ComputeSpec,
) -> Result<catalog::CatalogReport, catalog::CatalogError> {
    catalog::apply(
        &TokioEnv::new(),
        &pg.params(),
        spec,
        &catalog::Progress::new(&Metrics::new(), "start"),
    )
    .await
}

async fn exec(pg: &TestPostgres, db: &str, sql: &str) {
    pg.client(db)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

#[tokio::test]
async fn neon_fixture_applies_with_hostile_names_and_converges() {
    let Some(spec) = neon_spec() else { return };
    let pg = TestPostgres::start(&[]).await;
    // The state the fixture's delta operations expect to find.
    exec(&pg, "postgres", r#"CREATE ROLE "zenith2" LOGIN; CREATE ROLE "zenith new" LOGIN PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';"#).await;
    exec(&pg, "postgres", "CREATE DATABASE zenith_test").await;
    exec(&pg, "postgres", r#"CREATE DATABASE "DB""#).await;
    let metrics = Metrics::new();
    let report = catalog::apply(
        &TokioEnv::new(),
        &pg.params(),
        &spec,
        &catalog::Progress::new(&metrics, "start"),
    )
    .await
    .expect("first apply");
    assert!(report.executed > 0 && report.failed == 0, "{report:?}");
    assert_eq!(report.planned, report.executed);

    let snap = pg.snapshot().await;
    for role in &spec.cluster.roles {
        let got = snap.roles.iter().find(|r| r.name == role.name);
        let got = got.unwrap_or_else(|| panic!("role {:?} missing: {snap:?}", role.name));
        let want = role.encrypted_password.as_ref().map(|p| format!("md5{p}"));
        assert_eq!(
            got.password.as_ref().map(|p| p.expose().to_string()),
            want,
            "{:?}",
            role.name
        );
    }
    for db in &spec.cluster.databases {
        let got = snap.databases.iter().find(|d| d.name == db.name);
        assert_eq!(
            got.map(|d| d.owner.as_str()),
            Some(db.owner.as_str()),
            "{:?}",
            db.name
        );
    }
    let names: Vec<&str> = snap.roles.iter().map(|r| r.name.as_str()).collect();
    assert!(
        !names.contains(&"zenith2") && !names.contains(&"zenith new"),
        "{names:?}"
    );
    let dbs: Vec<&str> = snap.databases.iter().map(|d| d.name.as_str()).collect();
    assert!(
        !dbs.contains(&"zenith_test") && !dbs.contains(&"DB"),
        "{dbs:?}"
    );
    assert!(
        metrics
            .encode()
            .contains(r#"catalog_statements_total{operation="start",outcome="executed"}"#)
    );

    let again = apply(&pg, &spec).await.expect("second apply");
    assert_eq!((again.planned, again.executed), (0, 0), "{again:?}");
    let through_api = catalog::read_snapshot(&TokioEnv::new(), &pg.target("postgres"))
        .await
        .expect("read_snapshot");
    assert_eq!(through_api, snap);
}

#[tokio::test]
async fn role_owning_objects_and_holding_grants_in_two_databases_is_dropped() {
    let pg = TestPostgres::start(&[]).await;
    let spec1 = spec(serde_json::json!({"cluster": {
        "roles": [{"name": "app"}, {"name": "Doomed \"one\""}],
        "databases": [{"name": "one", "owner": "app"}, {"name": "two", "owner": "app"}]}}));
    apply(&pg, &spec1).await.expect("create");
    for db in ["one", "two"] {
        exec(&pg, db, &format!(r#"
            CREATE TABLE app_t (x int); ALTER TABLE app_t OWNER TO app;
            GRANT CREATE ON SCHEMA public TO "Doomed ""one""";
            GRANT CREATE ON DATABASE {db} TO "Doomed ""one""";
            SET ROLE "Doomed ""one"""; CREATE TABLE doomed_t (x int); CREATE SCHEMA doomed_s; RESET ROLE;
            GRANT SELECT ON app_t TO "Doomed ""one""";
            ALTER DEFAULT PRIVILEGES FOR ROLE "Doomed ""one""" GRANT SELECT ON TABLES TO app;"#)).await;
    }
    exec(
        &pg,
        "postgres",
        r#"GRANT CONNECT ON DATABASE one TO "Doomed ""one""""#,
    )
    .await;
    exec(
        &pg,
        "postgres",
        r#"CREATE DATABASE owned_by_doomed OWNER "Doomed ""one""""#,
    )
    .await;
    let spec2 = spec(serde_json::json!({
        "cluster": {"roles": [{"name": "app"}],
                    "databases": [{"name": "one", "owner": "app"}, {"name": "two", "owner": "app"}]},
        "delta_operations": [{"action": "delete_role", "name": "Doomed \"one\""}]}));
    let report = apply(&pg, &spec2).await.expect("delete_role applies");
    assert_eq!(report.failed, 0);
    let snap = pg.snapshot().await;
    assert!(
        !snap.roles.iter().any(|r| r.name.starts_with("Doomed")),
        "{snap:?}"
    );
    let owned = snap
        .databases
        .iter()
        .find(|d| d.name == "owned_by_doomed")
        .expect("database kept");
    assert_eq!(owned.owner, support::SUPERUSER);
    for db in ["one", "two"] {
        let c = pg.client(db).await;
        let row = c
            .query_one(
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'doomed_t'",
                &[],
            )
            .await
            .expect("the reassigned table stays");
        assert_eq!(
            row.get::<_, String>(0),
            "app",
            "objects go to the database owner"
        );
    }
    let again = apply(&pg, &spec2).await.expect("second apply");
    assert_eq!(again.executed, 0);
}

#[tokio::test]
async fn rename_keeps_md5_login_working_under_the_new_name() {
    let pg = TestPostgres::start(&[]).await;
    let pw = "s3cret pass";
    let create = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "Old Name", "encrypted_password": md5_hex(pw, "Old Name")}]}}));
    apply(&pg, &create).await.expect("create");
    pg.login("Old Name", Some(pw), "postgres")
        .await
        .expect("login as the old name");

    let rename = spec(serde_json::json!({
        "cluster": {"roles": [{"name": "new\"name", "encrypted_password": md5_hex(pw, "new\"name")}]},
        "delta_operations": [{"action": "rename_role", "name": "Old Name", "new_name": "new\"name"}]}));
    let report = apply(&pg, &rename).await.expect("rename");
    assert_eq!(
        report.executed, 2,
        "rename, then the md5 password again: {report:?}"
    );
    pg.login("new\"name", Some(pw), "postgres")
        .await
        .expect("login as the new name");
    assert!(pg.login("Old Name", Some(pw), "postgres").await.is_err());
    assert_eq!(apply(&pg, &rename).await.expect("again").executed, 0);
}

#[tokio::test]
async fn password_changes_only_when_it_differs() {
    let pg = TestPostgres::start(&[]).await;
    let upper = md5_hex("pw", "r").to_ascii_uppercase();
    // A well-formed verifier: 32-byte stored and server keys.
    let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=:YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
    let s = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "r", "encrypted_password": upper},
        {"name": "s", "encrypted_password": scram},
        {"name": "n", "encrypted_password": null}]}}));
    assert_eq!(apply(&pg, &s).await.expect("create").executed, 3);
    assert_eq!(
        apply(&pg, &s).await.expect("again").executed,
        0,
        "md5 case and SCRAM compare equal"
    );
    pg.login("r", Some("pw"), "postgres")
        .await
        .expect("md5 login");
    let snap = pg.snapshot().await;
    let pw = |n: &str| {
        snap.roles
            .iter()
            .find(|r| r.name == n)
            .and_then(|r| r.password.clone())
    };
    assert_eq!(
        pw("s").map(|p| p.expose().to_string()).as_deref(),
        Some(scram)
    );
    assert_eq!(pw("n"), None);

    let changed = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "r", "encrypted_password": md5_hex("pw2", "r")},
        {"name": "s", "encrypted_password": scram},
        {"name": "n", "encrypted_password": null}]}}));
    assert_eq!(apply(&pg, &changed).await.expect("change").executed, 1);
    pg.login("r", Some("pw2"), "postgres")
        .await
        .expect("new password works");
}

#[tokio::test]
async fn users_database_settings_do_not_break_the_apply() {
    let pg = TestPostgres::start(&[]).await;
    exec(&pg, "postgres", "CREATE DATABASE ro").await;
    // One session: once `postgres` defaults to read-only, new sessions
    // there could not run ALTER DATABASE any more.
    let sql: String = ["ro", "postgres"]
        .iter()
        .map(|db| {
            format!(
                "ALTER DATABASE {db} SET default_transaction_read_only = on; \
                 ALTER DATABASE {db} SET statement_timeout = 1; \
                 ALTER DATABASE {db} SET search_path = nowhere; "
            )
        })
        .chain(["ALTER ROLE cloud_admin SET lock_timeout = 1".to_string()])
        .collect();
    exec(&pg, "postgres", &sql).await;
    let s = spec(serde_json::json!({
        "cluster": {"roles": [{"name": "u", "encrypted_password": md5_hex("x", "u")}],
                    "databases": [{"name": "ro", "owner": "u", "extensions": [{"name": "citext"}]},
                                  {"name": "fresh", "owner": "u"}]}}));
    let report = apply(&pg, &s).await.expect("apply despite users' settings");
    assert_eq!(report.failed, 0);
    let c = pg.client("ro").await;
    c.batch_execute("SET statement_timeout = 0")
        .await
        .expect("reset timeout");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'citext'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(apply(&pg, &s).await.expect("again").executed, 0);
}

#[tokio::test]
async fn extensions_are_created_updated_and_pg_stat_statements_follows_preload() {
    let pg = TestPostgres::start(&[("shared_preload_libraries", "pg_stat_statements")]).await;
    let s = spec(serde_json::json!({
        "cluster": {
            "settings": [{"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"}],
            "roles": [{"name": "u"}],
            "databases": [{"name": "e", "owner": "u", "extensions": [
                {"name": "hstore", "version": "1.4"}, {"name": "pgcrypto", "schema": "public"}]}]}}));
    let report = apply(&pg, &s).await.expect("apply");
    assert_eq!(
        report.executed,
        2 + 2 + 1 + 2,
        "role, database; two extensions in e, one in postgres; a marker in each: {report:?}"
    );
    let installed = |db: &'static str| {
        let pg = &pg;
        async move {
            pg.client(db)
                .await
                .query("SELECT extname::text, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1", &[])
                .await
                .expect("extensions")
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        }
    };
    // Without a version, the major's default (pgcrypto 1.3 on 15-17, 1.4 on 18).
    let pgcrypto_default: String = pg
        .client("e")
        .await
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pgcrypto'",
            &[],
        )
        .await
        .expect("pgcrypto's default version")
        .get(0);
    assert_eq!(
        installed("e").await,
        [
            ("hstore".to_string(), "1.4".to_string()),
            ("pgcrypto".into(), pgcrypto_default)
        ]
    );
    assert_eq!(
        installed("postgres").await.len(),
        1,
        "pg_stat_statements in postgres"
    );
    assert_eq!(apply(&pg, &s).await.expect("again").executed, 0);

    let mut newer = s.clone();
    newer.cluster.databases[0].extensions[0].version = Some("1.8".into());
    assert_eq!(
        apply(&pg, &newer).await.expect("update").executed,
        2,
        "the update and the new marker"
    );
    assert_eq!(installed("e").await[0].1, "1.8");
}

#[tokio::test]
async fn invalid_databases_are_dropped_or_recreated_and_locked_ones_skipped() {
    let pg = TestPostgres::start(&[]).await;
    exec(&pg, "postgres", "CREATE ROLE gone").await;
    for db in ["broken", "broken2", "locked"] {
        exec(&pg, "postgres", &format!("CREATE DATABASE {db}")).await;
    }
    exec(
        &pg,
        "postgres",
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname IN ('broken', 'broken2'); \
                           UPDATE pg_database SET datallowconn = false WHERE datname = 'locked'",
    )
    .await;
    let s = spec(serde_json::json!({
        "cluster": {"databases": [
            {"name": "broken2", "owner": "cloud_admin"},
            {"name": "locked", "owner": "cloud_admin", "extensions": [{"name": "citext"}]}]},
        "delta_operations": [{"action": "delete_role", "name": "gone"}]}));
    let report = apply(&pg, &s)
        .await
        .expect("apply skips what it cannot connect to");
    assert_eq!(report.skipped_databases, ["locked"]);
    let snap = pg.snapshot().await;
    assert!(!snap.roles.iter().any(|r| r.name == "gone"));
    let db = |n: &str| snap.databases.iter().find(|d| d.name == n).cloned();
    assert!(db("broken2").expect("recreated").valid);
    assert!(
        db("broken").is_none(),
        "an invalid database the spec does not list is dropped"
    );
    assert_eq!(apply(&pg, &s).await.expect("again").executed, 0);
}

#[tokio::test]
async fn a_failing_statement_names_it_keeps_earlier_work_and_a_rerun_converges() {
    let pg = TestPostgres::start(&[]).await;
    let secret = md5_hex("topsecret", "keeper");
    let bad = spec(serde_json::json!({"cluster": {
        "roles": [{"name": "keeper", "encrypted_password": secret}],
        "databases": [{"name": "d", "owner": "keeper", "options": [
            {"name": "LC_COLLATE", "value": "no_such_locale", "vartype": "string"},
            {"name": "TEMPLATE", "value": "template0", "vartype": "enum"}]}]}}));
    let metrics = Metrics::new();
    let err = catalog::apply(
        &TokioEnv::new(),
        &pg.params(),
        &bad,
        &catalog::Progress::new(&metrics, "reconfigure"),
    )
    .await
    .expect_err("an unknown locale fails");
    let msg = err.to_string();
    assert!(
        msg.contains(r#"CREATE DATABASE "d" WITH OWNER "keeper" LC_COLLATE 'no_such_locale' TEMPLATE "template0" (in database "postgres") failed"#),
        "{msg}"
    );
    assert!(!msg.contains(&secret), "{msg}");
    let exposition = metrics.encode();
    assert!(!exposition.contains(&secret));
    for (outcome, n) in [("planned", 2), ("executed", 1), ("failed", 1)] {
        let line = format!(
            r#"catalog_statements_total{{operation="reconfigure",outcome="{outcome}"}} {n}"#
        );
        assert!(exposition.contains(&line), "{line} in {exposition}");
    }
    assert!(
        pg.snapshot().await.roles.iter().any(|r| r.name == "keeper"),
        "the role created before stays"
    );

    let mut good = bad.clone();
    good.cluster.databases[0].options = None;
    let report = apply(&pg, &good).await.expect("fixed spec applies");
    assert_eq!(
        report.executed, 1,
        "only the database is left to do: {report:?}"
    );
    assert_eq!(apply(&pg, &good).await.expect("again").executed, 0);
}

#[tokio::test]
async fn a_spec_the_catalog_cannot_take_is_refused_before_any_statement() {
    let pg = TestPostgres::start(&[]).await;
    let s = spec(serde_json::json!({"cluster": {
        "roles": [{"name": "r"}],
        "databases": [{"name": "d", "owner": "r", "options": [
            {"name": "TEMPLATE", "value": "no_such_template", "vartype": "enum"}]}]}}));
    let err = apply(&pg, &s).await.expect_err("unknown template");
    assert!(
        err.to_string()
            .contains("TEMPLATE \"no_such_template\" does not exist"),
        "{err}"
    );
    assert!(
        !pg.snapshot().await.roles.iter().any(|r| r.name == "r"),
        "nothing ran"
    );
}

/// Prints the durations it sees (not asserted: speed is for benchmarks).
#[allow(clippy::disallowed_methods)]
#[tokio::test]
async fn many_roles_and_databases_apply_pipelined_and_converge() {
    let pg = TestPostgres::start(&[]).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/spec_many.json"
    ))
    .expect("fixture");
    let s: ComputeSpec = serde_json::from_str(&text).expect("parses");
    let mut roles_only = s.clone();
    roles_only.cluster.databases.clear();
    let t = std::time::Instant::now();
    let report = apply(&pg, &roles_only).await.expect("roles");
    assert_eq!(report.executed as usize, s.cluster.roles.len());
    eprintln!("spec_many: {} roles in {:?}", report.executed, t.elapsed());
    let t0 = std::time::Instant::now();
    let report = apply(&pg, &s).await.expect("apply");
    let first = t0.elapsed();
    assert_eq!(report.executed as usize, s.cluster.databases.len());
    let t1 = std::time::Instant::now();
    assert_eq!(apply(&pg, &s).await.expect("again").executed, 0);
    eprintln!(
        "spec_many: databases {first:?} ({} statements), second apply {:?}",
        report.executed,
        t1.elapsed()
    );
}
