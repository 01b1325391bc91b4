//! Role options, memberships, database options, invalid databases and
//! extension moves against a real Postgres 15: each applied, drift
//! reverted, a second apply issuing no statement, and databases with
//! nothing to do left unvisited.

use crate::support;

use crate::support::postgres::TestPostgres;
use compute_ctl::catalog;
use compute_ctl::env::TokioEnv;
use compute_ctl::metrics::Metrics;
use compute_ctl::spec::{ComputeSpec, ValidationContext, validate};

fn spec(json: serde_json::Value) -> ComputeSpec {
    let mut base = serde_json::json!({"format_version": 1.0, "cluster": {}});
    if let (Some(b), Some(o)) = (base.as_object_mut(), json.as_object()) {
        b.extend(o.clone());
    }
    serde_json::from_value(base).expect("test spec parses")
}

fn opt(name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "value": value, "vartype": "string"})
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

async fn exec(pg: &TestPostgres, db: &str, sql: &str) {
    pg.client(db)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

async fn value(pg: &TestPostgres, db: &str, sql: &str) -> String {
    support::query_value(&pg.client(db).await, sql)
        .await
        .unwrap_or_else(|| format!("<null: {sql}>"))
}

/// The attributes of `role` as one comparable line.
async fn attributes(pg: &TestPostgres, role: &str) -> String {
    value(
        pg,
        "postgres",
        &format!(
            "SELECT concat_ws(' ', rolcanlogin, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, rolconnlimit, \
             coalesce(to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'never')) \
             FROM pg_authid WHERE rolname = '{role}'"
        ),
    )
    .await
}

async fn memberships(pg: &TestPostgres, role: &str) -> String {
    value(
        pg,
        "postgres",
        &format!(
            "SELECT coalesce(string_agg(g.rolname, ',' ORDER BY g.rolname), '') FROM pg_auth_members m \
             JOIN pg_authid g ON g.oid = m.roleid JOIN pg_authid u ON u.oid = m.member WHERE u.rolname = '{role}'"
        ),
    )
    .await
}

#[tokio::test]
async fn role_options_and_memberships_apply_drift_is_reverted_and_converges() {
    let pg = TestPostgres::start(&[]).await;
    let s = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "group"},
        {"name": "Power \"User\"", "options": [
            opt("createdb", "true"), opt("createrole", "true"), opt("replication", "true"),
            opt("bypassrls", "true"), opt("inherit", "false"), opt("connection_limit", "7"),
            opt("valid_until", "2031-02-03T04:05:06Z"), opt("in_role", "group, pg_monitor")]},
        {"name": "plain"}]}}));
    let report = apply(&pg, &s).await;
    assert_eq!(report.executed, 5, "3 creates, 2 grants: {report:?}");
    assert_eq!(
        attributes(&pg, "Power \"User\"").await,
        "t t t t t f 7 2031-02-03 04:05:06"
    );
    assert_eq!(memberships(&pg, "Power \"User\"").await, "group,pg_monitor");
    assert_eq!(attributes(&pg, "plain").await, "t f f f f t -1 never");
    assert_eq!(apply(&pg, &s).await.executed, 0, "second apply");

    // Drift by hand: attributes, a membership too many and one too few,
    // and a role without options made CREATEDB.
    exec(
        &pg,
        "postgres",
        r#"ALTER ROLE "Power ""User""" NOCREATEDB NOLOGIN CONNECTION LIMIT 1 VALID UNTIL 'infinity';
        GRANT pg_read_all_data TO "Power ""User"""; REVOKE pg_monitor FROM "Power ""User""";
        ALTER ROLE plain CREATEDB; GRANT pg_monitor TO plain"#,
    )
    .await;
    let report = apply(&pg, &s).await;
    assert_eq!(
        report.executed, 4,
        "alter, grant, revoke, alter: {report:?}"
    );
    assert_eq!(
        attributes(&pg, "Power \"User\"").await,
        "t t t t t f 7 2031-02-03 04:05:06"
    );
    assert_eq!(memberships(&pg, "Power \"User\"").await, "group,pg_monitor");
    assert_eq!(attributes(&pg, "plain").await, "t f f f f t -1 never");
    assert_eq!(
        memberships(&pg, "plain").await,
        "pg_monitor",
        "no in_role: memberships are left alone"
    );
    assert_eq!(apply(&pg, &s).await.executed, 0);

    // Options removed: back to the defaults, memberships emptied.
    let plain = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "group"}, {"name": "Power \"User\"", "options": [opt("in_role", "")]}, {"name": "plain"}]}}));
    assert_eq!(apply(&pg, &plain).await.executed, 3, "alter, 2 revokes");
    assert_eq!(
        attributes(&pg, "Power \"User\"").await,
        "t f f f f t -1 never"
    );
    assert_eq!(memberships(&pg, "Power \"User\"").await, "");
    assert_eq!(apply(&pg, &plain).await.executed, 0);
}

#[tokio::test]
async fn a_superuser_option_or_membership_is_refused_before_any_statement() {
    let bad = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "ok"}, {"name": "boss", "options": [opt("createdb", "true"), opt("superuser", "true")]}]}}));
    let problems = validate(&bad, &ValidationContext::default());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "$.cluster.roles[1].options[1].name");
    assert!(problems[0].message.contains("superuser"), "{problems:?}");
    let bad_value = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "r", "options": [opt("valid_until", "next tuesday")]}]}}));
    let problems = validate(&bad_value, &ValidationContext::default());
    assert_eq!(problems[0].path, "$.cluster.roles[0].options[0].value");

    let pg = TestPostgres::start(&[]).await;
    let escalate = spec(serde_json::json!({"cluster": {"roles": [
        {"name": "sneaky", "options": [opt("in_role", "cloud_admin")]}]}}));
    let err = catalog::apply(
        &TokioEnv::new(),
        &pg.params(),
        &escalate,
        &catalog::Progress::new(&Metrics::new(), "start"),
    )
    .await
    .expect_err("membership in a superuser role");
    assert!(err.to_string().contains("superuser"), "{err}");
    assert!(!pg.snapshot().await.roles.iter().any(|r| r.name == "sneaky"));
}

#[tokio::test]
async fn database_options_apply_to_existing_databases_and_invalid_ones_are_dropped() {
    let pg = TestPostgres::start(&[]).await;
    exec(&pg, "postgres", "CREATE DATABASE half_dropped").await;
    exec(&pg, "postgres", "CREATE DATABASE kept").await;
    exec(
        &pg,
        "postgres",
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'half_dropped'",
    )
    .await;
    let s = spec(serde_json::json!({"cluster": {
        "roles": [{"name": "o"}],
        "databases": [
            {"name": "kept", "owner": "o", "options": [
                {"name": "CONNECTION_LIMIT", "value": "5", "vartype": "integer"},
                {"name": "IS_TEMPLATE", "value": "true", "vartype": "bool"}]},
            {"name": "locked", "owner": "o", "restrict_conn": true},
            {"name": "fresh", "owner": "o", "options": [
                {"name": "CONNECTION_LIMIT", "value": "2", "vartype": "integer"}]}]}}));
    let report = apply(&pg, &s).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let row = |n: &'static str| {
        let pg = &pg;
        async move {
            value(pg, "postgres", &format!(
                "SELECT concat_ws(' ', pg_get_userbyid(datdba), datallowconn, datconnlimit, datistemplate) FROM pg_database WHERE datname = '{n}'"
            )).await
        }
    };
    assert_eq!(row("kept").await, "o t 5 t");
    assert_eq!(row("locked").await, "o f -1 f");
    assert_eq!(row("fresh").await, "o t 2 f");
    assert!(
        !pg.snapshot()
            .await
            .databases
            .iter()
            .any(|d| d.name == "half_dropped"),
        "an invalid database is dropped"
    );
    assert_eq!(apply(&pg, &s).await.executed, 0, "second apply");

    // Drift: the options the spec names are put back.
    exec(&pg, "postgres", "ALTER DATABASE kept WITH IS_TEMPLATE false CONNECTION LIMIT 9; ALTER DATABASE locked ALLOW_CONNECTIONS true; ALTER DATABASE fresh CONNECTION LIMIT 1").await;
    let report = apply(&pg, &s).await;
    assert_eq!(report.executed, 3, "{report:?}");
    assert_eq!(row("kept").await, "o t 5 t");
    assert_eq!(row("locked").await, "o f -1 f");
    assert_eq!(row("fresh").await, "o t 2 f");
    assert_eq!(apply(&pg, &s).await.executed, 0);
}

/// How many sessions the supervisor opened to `db` so far (log_connections).
fn sessions_to(pg: &TestPostgres, db: &str) -> usize {
    let needle = format!("database={db} application_name=compute_ctl");
    pg.log().lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn extensions_move_schema_and_version_and_idle_databases_are_not_visited() {
    let pg = TestPostgres::start(&[("log_connections", "on")]).await;
    exec(&pg, "postgres", "CREATE DATABASE e").await;
    exec(&pg, "e", "CREATE SCHEMA elsewhere; CREATE SCHEMA ext; CREATE EXTENSION hstore WITH SCHEMA elsewhere VERSION '1.4'; CREATE EXTENSION citext").await;
    let s = spec(serde_json::json!({"cluster": {
        "databases": [
            {"name": "e", "owner": "cloud_admin", "extensions": [
                {"name": "hstore", "schema": "ext", "version": "1.8"},
                {"name": "citext"},
                {"name": "pgcrypto", "schema": "ext"}]},
            {"name": "idle", "owner": "cloud_admin"}]}}));
    let report = apply(&pg, &s).await;
    assert_eq!(
        report.executed,
        1 + 2 + 1 + 1,
        "create idle; hstore moved and updated; pgcrypto created; the marker: {report:?}"
    );
    let installed = value(&pg, "e", "SELECT string_agg(e.extname || ' ' || n.nspname || ' ' || e.extversion, ', ' ORDER BY e.extname) \
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'").await;
    // citext and pgcrypto at the major's default (1.6 and 1.3 on 15-17; 1.8 and 1.4 on 18).
    let default = |name: &'static str| {
        let pg = &pg;
        async move {
            value(
                pg,
                "e",
                &format!(
                    "SELECT default_version FROM pg_available_extensions WHERE name = '{name}'"
                ),
            )
            .await
        }
    };
    let (citext, pgcrypto) = (default("citext").await, default("pgcrypto").await);
    assert_eq!(
        installed,
        format!("citext public {citext}, hstore ext 1.8, pgcrypto ext {pgcrypto}")
    );

    let before = (sessions_to(&pg, "e"), sessions_to(&pg, "idle"));
    assert_eq!(apply(&pg, &s).await.executed, 0, "second apply");
    assert_eq!(
        (sessions_to(&pg, "e"), sessions_to(&pg, "idle")),
        before,
        "nothing to do: no session to either database"
    );

    // A changed wish is visible in the snapshot (the marker differs): the
    // database is visited again, and only it.
    let mut moved = s.clone();
    moved.cluster.databases[0].extensions[1].schema = Some("ext".into());
    assert_eq!(apply(&pg, &moved).await.executed, 2, "citext moved, marker");
    assert_eq!(sessions_to(&pg, "e"), before.0 + 1);
    assert_eq!(sessions_to(&pg, "idle"), before.1);
    assert_eq!(apply(&pg, &moved).await.executed, 0);
}
