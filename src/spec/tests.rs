//! Validation rules, one problem per test, and every problem reported at once.

use super::*;

fn spec(json: serde_json::Value) -> ComputeSpec {
    serde_json::from_value(json).expect("test spec parses")
}

fn valid() -> serde_json::Value {
    serde_json::json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [{"name": "alice", "encrypted_password": "0123456789abcdef0123456789abcdef"}],
            "databases": [{"name": "app", "owner": "alice"}],
            "settings": [{"name": "work_mem", "value": "4MB", "vartype": "string"}]
        }
    })
}

fn problems(json: serde_json::Value) -> Vec<SpecProblem> {
    validate(&spec(json), &ValidationContext::default())
}

fn paths(json: serde_json::Value) -> Vec<String> {
    problems(json).into_iter().map(|p| p.path).collect()
}

#[test]
fn a_valid_spec_has_no_problems() {
    assert_eq!(problems(valid()), vec![]);
}

#[test]
fn unknown_fields_are_ignored_and_defaults_apply() {
    let mut j = valid();
    j["something_new"] = serde_json::json!({"x": 1});
    j["cluster"]["state"] = serde_json::json!("restarted");
    let s = spec(j);
    assert!(!s.skip_pg_catalog_updates);
    assert_eq!(s.mode, ComputeMode::Primary);
    assert!(s.delta_ops().is_empty());
}

#[test]
fn mode_accepts_neon_spellings() {
    for (json, mode) in [
        (serde_json::json!("Primary"), ComputeMode::Primary),
        (serde_json::json!("Replica"), ComputeMode::Replica),
        (
            serde_json::json!({"Static": "0/16B6C50"}),
            ComputeMode::Static("0/16B6C50".into()),
        ),
    ] {
        let mut j = valid();
        j["mode"] = json;
        assert_eq!(spec(j).mode, mode);
    }
}

#[test]
fn unsupported_format_version() {
    let mut j = valid();
    j["format_version"] = serde_json::json!(2.0);
    assert_eq!(paths(j), ["$.format_version"]);
}

#[test]
fn names_empty_too_long_or_with_nul() {
    let mut j = valid();
    j["cluster"]["roles"][0]["name"] = serde_json::json!("");
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("");
    j["cluster"]["databases"][0]["name"] = serde_json::json!("x".repeat(64));
    let ps = problems(j);
    assert!(
        ps.iter()
            .any(|p| p.path == "$.cluster.roles[0].name" && p.message.contains("empty"))
    );
    assert!(
        ps.iter()
            .any(|p| p.path == "$.cluster.databases[0].name" && p.message.contains("64 bytes"))
    );

    let mut j = valid();
    j["cluster"]["roles"][0]["name"] = serde_json::json!("a\u{0}b");
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("a\u{0}b");
    assert!(
        problems(j)
            .iter()
            .any(|p| p.path == "$.cluster.roles[0].name" && p.message.contains("NUL"))
    );
}

#[test]
fn sixty_three_bytes_is_the_limit_counted_in_bytes() {
    let mut j = valid();
    // 21 three-byte characters = 63 bytes: allowed. One more byte is not.
    j["cluster"]["roles"][0]["name"] = serde_json::json!("€".repeat(21));
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("€".repeat(21));
    assert_eq!(problems(j.clone()), vec![]);
    j["cluster"]["roles"][0]["name"] = serde_json::json!(format!("{}x", "€".repeat(21)));
    assert!(paths(j).contains(&"$.cluster.roles[0].name".to_string()));
}

#[test]
fn duplicate_role_and_database_names() {
    let mut j = valid();
    j["cluster"]["roles"] = serde_json::json!([{"name": "alice"}, {"name": "alice"}]);
    j["cluster"]["databases"] =
        serde_json::json!([{"name": "app", "owner": "alice"}, {"name": "app", "owner": "alice"}]);
    assert_eq!(
        paths(j),
        ["$.cluster.roles[1].name", "$.cluster.databases[1].name"]
    );
}

#[test]
fn names_differing_only_in_case_are_distinct() {
    let mut j = valid();
    j["cluster"]["roles"] = serde_json::json!([{"name": "MyRole"}, {"name": "myrole"}]);
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("MyRole");
    assert_eq!(problems(j), vec![]);
}

#[test]
fn database_owner_must_be_a_spec_role_a_renamed_role_or_the_superuser() {
    let mut j = valid();
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("mallory");
    assert_eq!(paths(j.clone()), ["$.cluster.databases[0].owner"]);

    j["cluster"]["databases"][0]["owner"] = serde_json::json!("cloud_admin");
    assert_eq!(problems(j.clone()), vec![]);

    j["cluster"]["databases"][0]["owner"] = serde_json::json!("new_alice");
    j["delta_operations"] = serde_json::json!([{"action": "rename_role", "name": "old_alice", "new_name": "new_alice"}]);
    assert_eq!(problems(j.clone()), vec![]);

    let ctx = ValidationContext {
        superuser: "admin".into(),
    };
    j["cluster"]["databases"][0]["owner"] = serde_json::json!("cloud_admin");
    assert_eq!(validate(&spec(j), &ctx).len(), 1);
}

#[test]
fn renames_need_new_name_deletes_do_not() {
    let mut j = valid();
    j["delta_operations"] = serde_json::json!([
        {"action": "rename_db", "name": "a"},
        {"action": "rename_role", "name": "b"},
        {"action": "delete_db", "name": "c"},
        {"action": "delete_role", "name": "d"}
    ]);
    assert_eq!(
        paths(j),
        [
            "$.delta_operations[0].new_name",
            "$.delta_operations[1].new_name"
        ]
    );
}

#[test]
fn deltas_must_not_delete_or_rename_what_the_cluster_lists() {
    let mut j = valid();
    j["delta_operations"] = serde_json::json!([
        {"action": "delete_role", "name": "alice"},
        {"action": "rename_db", "name": "app", "new_name": "app2"},
        {"action": "rename_role", "name": "Alice", "new_name": "bob"},
        {"action": "delete_db", "name": "other"}
    ]);
    assert_eq!(
        paths(j),
        ["$.delta_operations[0].name", "$.delta_operations[1].name"]
    );
}

#[test]
fn unknown_delta_action_is_a_parse_error() {
    let mut j = valid();
    j["delta_operations"] = serde_json::json!([{"action": "truncate_db", "name": "a"}]);
    let err =
        ComputeSpec::parse_and_validate(&j.to_string(), &ValidationContext::default()).unwrap_err();
    assert!(matches!(err, SpecError::Parse(_)), "{err}");
}

#[test]
fn settings_vartype_name_and_value() {
    let mut j = valid();
    j["cluster"]["settings"] = serde_json::json!([
        {"name": "work_mem", "value": "4MB", "vartype": "size"},
        {"name": "work mem", "value": "4MB", "vartype": "string"},
        {"name": "1abc", "value": "x", "vartype": "string"},
        {"name": "neon.pageserver_connstring", "value": "a\nb", "vartype": "string"},
        {"name": "neon.tenant_id", "value": "ok", "vartype": "string"},
        {"name": "log_line_prefix", "value": "%m [%p] ", "vartype": "string"}
    ]);
    assert_eq!(
        paths(j),
        [
            "$.cluster.settings[0].vartype",
            "$.cluster.settings[1].name",
            "$.cluster.settings[2].name",
            "$.cluster.settings[3].value"
        ]
    );
}

#[test]
fn guc_names() {
    for ok in ["work_mem", "neon.tenant_id", "a.b.c", "_x", "x$1"] {
        assert!(is_guc_name(ok), "{ok}");
    }
    for bad in ["", "work mem", "a..b", ".a", "a.", "1a", "a-b", "a;b"] {
        assert!(!is_guc_name(bad), "{bad}");
    }
}

#[test]
fn passwords_must_be_md5_hex_or_scram() {
    let mut j = valid();
    j["cluster"]["roles"] = serde_json::json!([
        {"name": "a", "encrypted_password": "plaintext"},
        {"name": "b", "encrypted_password": "md50123456789abcdef0123456789abcdef"},
        {"name": "c", "encrypted_password": "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"},
        {"name": "alice", "encrypted_password": null}
    ]);
    assert_eq!(
        paths(j),
        [
            "$.cluster.roles[0].encrypted_password",
            "$.cluster.roles[1].encrypted_password"
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut j = valid();
    j["format_version"] = serde_json::json!(3.0);
    j["cluster"]["roles"] = serde_json::json!([{"name": "alice"}, {"name": "alice"}]);
    j["cluster"]["settings"] = serde_json::json!([{"name": "x y", "value": "1", "vartype": "int"}]);
    j["delta_operations"] = serde_json::json!([{"action": "rename_role", "name": "z"}]);
    let err =
        ComputeSpec::parse_and_validate(&j.to_string(), &ValidationContext::default()).unwrap_err();
    let SpecError::Invalid(ps) = &err else {
        panic!("{err}")
    };
    assert_eq!(ps.len(), 4, "{err}");
    assert!(
        err.to_string()
            .starts_with("spec is invalid (4 problem(s))")
    );
}

#[test]
fn zero_reconfigure_concurrency_is_rejected() {
    let mut j = valid();
    j["reconfigure_concurrency"] = serde_json::json!(0);
    assert_eq!(paths(j), ["$.reconfigure_concurrency"]);
}

#[test]
fn neon_fixture_parses_with_its_hostile_names() {
    let Some(text) = neon_fixture("cluster_spec.json") else {
        return;
    };
    let s = ComputeSpec::parse_and_validate(&text, &ValidationContext::default()).expect("valid");
    let roles: Vec<&str> = s.cluster.roles.iter().map(|r| r.name.as_str()).collect();
    assert!(roles.contains(&"zenith \"new\""));
    assert!(roles.contains(&"\"name\";\\n select 1;"));
    assert!(roles.contains(&"MyRole"));
    assert_eq!(s.cluster.databases.len(), 3);
    assert_eq!(s.delta_ops().len(), 4);
    assert_eq!(s.delta_ops()[3].action, DeltaAction::RenameRole);
    assert_eq!(
        s.setting("test.escaping"),
        Some("here's a backslash \\ and a quote ' and a double-quote \" hooray")
    );
    assert_eq!(s.suspend_timeout_seconds, Some(3600));
    assert!(!s.skip_pg_catalog_updates);
    // What we do not use is listed, not dropped silently.
    for f in [
        "$.remote_extensions",
        "$.pgbouncer_settings",
        "$.cluster.state",
    ] {
        assert!(
            s.ignored_fields.iter().any(|g| g == f),
            "{f} not in {:?}",
            s.ignored_fields
        );
    }
}

#[test]
fn neon_forms_are_accepted_null_mode_and_pageserver_connection_info() {
    let mut j = valid();
    j["mode"] = serde_json::Value::Null;
    j["pageserver_connection_info"] = serde_json::json!({
        "shard_count": 0,
        "stripe_size": null,
        "prefer_protocol": "libpq",
        "shards": {"0000": {"pageservers": [
            {"id": 1, "grpc_url": "grpc://ps:51051"},
            {"id": 2, "libpq_url": "postgresql://cloud_admin@ps:6400/postgres", "future": true}
        ]}}
    });
    let s = spec(j.clone());
    assert_eq!(s.mode, ComputeMode::Primary);
    assert_eq!(
        s.pageserver_connstring.as_deref(),
        Some("postgresql://cloud_admin@ps:6400/postgres")
    );
    assert!(paths(j.clone()).is_empty());
    assert_eq!(
        s.ignored_fields,
        ["$.pageserver_connection_info.shards.0000.pageservers.1.future"]
    );
    // The older field wins when both are there.
    j["pageserver_connstring"] = serde_json::json!("postgresql://cloud_admin@old:6400/postgres");
    assert_eq!(
        spec(j.clone()).pageserver_connstring.as_deref(),
        Some("postgresql://cloud_admin@old:6400/postgres")
    );
    // Sharded storage is not something vanilla Postgres can use.
    j["pageserver_connection_info"]["shard_count"] = serde_json::json!(4);
    assert_eq!(paths(j), ["$.pageserver_connection_info.shard_count"]);
}

/// Neon's file `name`, found as `tests/it/support/neon.rs` finds it (a lib unit
/// test cannot use the integration tests' support): `$COMPUTE_CTL_NEON_FIXTURES`,
/// then `../shared/fixtures/neon`. Absent: `None` and one line saying the
/// test is skipped, or a failure with `COMPUTE_CTL_REQUIRE_NEON_FIXTURES=1`.
fn neon_fixture(name: &str) -> Option<String> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("COMPUTE_CTL_NEON_FIXTURES").filter(|d| !d.is_empty()) {
        dirs.push(std::path::PathBuf::from(d));
    }
    dirs.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/neon"));
    if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(std::fs::read_to_string(&p).expect("the Neon fixture is readable"));
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let msg = format!(
        "Neon's {name} is missing (looked in {}); set COMPUTE_CTL_NEON_FIXTURES to a directory holding it (see README, \"Neon's fixtures\")",
        looked.join(", ")
    );
    if std::env::var("COMPUTE_CTL_REQUIRE_NEON_FIXTURES").is_ok_and(|v| v == "1") {
        panic!("{msg}; COMPUTE_CTL_REQUIRE_NEON_FIXTURES=1 makes this a failure");
    }
    // Straight to stderr, past the test harness's capture: the one line shows.
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("SKIPPED: {msg}\n").as_bytes());
    None
}

#[test]
fn replica_and_static_need_a_source_and_a_well_formed_lsn() {
    let mut j = valid();
    j["mode"] = serde_json::json!("Replica");
    assert_eq!(paths(j.clone()), vec!["$.pageserver_connstring"]);
    j["pageserver_connstring"] = "host=storage port=6400".into();
    assert_eq!(problems(j.clone()), vec![]);
    j["mode"] = serde_json::json!({"Static": "0/16B3748"});
    assert_eq!(problems(j.clone()), vec![]);
    j["mode"] = serde_json::json!({"Static": "16B3748"});
    let p = problems(j.clone());
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "$.mode.Static");
    assert!(p[0].message.contains("malformed LSN"), "{p:?}");
    j["pageserver_connstring"] = serde_json::Value::Null;
    assert_eq!(paths(j), vec!["$.mode.Static", "$.pageserver_connstring"]);
}

#[test]
fn storage_connection_strings_must_parse() {
    let mut j = valid();
    j["pageserver_connstring"] = "host=/var/run/postgresql".into();
    j["safekeeper_connstrings"] = serde_json::json!(["sk1:5454", "sk2:notaport", "host=a port=x"]);
    assert_eq!(
        paths(j),
        vec![
            "$.pageserver_connstring",
            "$.safekeeper_connstrings[1]",
            "$.safekeeper_connstrings[2]"
        ]
    );
}

#[test]
fn a_running_compute_cannot_change_its_mode() {
    let mut a = valid();
    a["pageserver_connstring"] = "host=storage".into();
    let mut b = a.clone();
    b["mode"] = serde_json::json!("Replica");
    assert_eq!(validate_change(&spec(a.clone()), &spec(a.clone())), vec![]);
    let p = validate_change(&spec(a.clone()), &spec(b.clone()));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "$.mode");
    assert!(
        p[0].message.contains("primary") && p[0].message.contains("replica"),
        "{p:?}"
    );
    let mut c = b.clone();
    c["mode"] = serde_json::json!({"Static": "0/1"});
    let mut d = b.clone();
    d["mode"] = serde_json::json!({"Static": "0/2"});
    assert_eq!(validate_change(&spec(c.clone()), &spec(d)).len(), 1);
    // A move (another source) is no mode change.
    let mut moved = b.clone();
    moved["pageserver_connstring"] = "host=elsewhere".into();
    assert_eq!(validate_change(&spec(b), &spec(moved)), vec![]);
}

#[test]
fn a_running_primary_neither_gains_its_first_safekeepers_nor_loses_all() {
    let plain = valid();
    let mut durable = valid();
    durable["safekeeper_connstrings"] = serde_json::json!(["127.0.0.1:1", "127.0.0.1:2"]);
    let mut moved = durable.clone();
    moved["safekeeper_connstrings"][1] = "127.0.0.1:3".into();
    for (running, new, why) in [
        (&plain, &durable, "started without safekeepers"),
        (&durable, &plain, "silently drop"),
    ] {
        let p = validate_change(&spec(running.clone()), &spec(new.clone()));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "$.safekeeper_connstrings");
        assert!(p[0].message.contains(why), "{p:?}");
        assert!(
            p[0].message.contains("restart") || p[0].message.contains("terminate"),
            "says what to do: {p:?}"
        );
    }
    // A move to another set, or no safekeepers before and after, is fine.
    assert_eq!(
        validate_change(&spec(durable.clone()), &spec(moved)),
        vec![]
    );
    assert_eq!(validate_change(&spec(plain.clone()), &spec(plain)), vec![]);
    // A replica's safekeepers are only the sync of its start: no rule.
    let mut replica = durable.clone();
    replica["mode"] = "Replica".into();
    replica["pageserver_connstring"] = "host=storage".into();
    let mut bare = replica.clone();
    bare["safekeeper_connstrings"] = serde_json::json!([]);
    assert_eq!(validate_change(&spec(replica), &spec(bare)), vec![]);
}

proptest::proptest! {
    /// The branch-free `is_md5_hex` says what `all` would: exactly 32 bytes,
    /// each an ASCII hex digit (strings drawn near the boundary: 31 to 33
    /// characters, mostly hex, sometimes not, sometimes not ASCII).
    #[test]
    fn is_md5_hex_is_32_hex_digits(s in "[0-9a-fA-F]{31,33}|[0-9a-fA-F]{0,31}[g-zG-Z:/@`\\x00é][0-9a-fA-F]{0,31}") {
        let expected = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        proptest::prop_assert_eq!(is_md5_hex(&s), expected);
    }
}

#[test]
fn unused_fields_inside_the_role_and_database_lists_are_listed() {
    let mut j = valid();
    j["cluster"]["roles"][0]["foo"] = serde_json::json!(1);
    j["cluster"]["roles"][0]["options"] =
        serde_json::json!([{"name": "createdb", "vartype": "bool", "zzz": true}]);
    j["cluster"]["databases"][0]["bar"] = serde_json::json!({"x": 1});
    j["cluster"]["state"] = serde_json::json!("ok");
    let expected = [
        "$.cluster.state",
        "$.cluster.roles.0.foo",
        "$.cluster.roles.0.options.0.zzz",
        "$.cluster.databases.0.bar",
    ];
    // Twice: the second parse shares the lists the first decoded (unless
    // another test's parse came between) and must list the same fields.
    for _ in 0..2 {
        let text = serde_json::to_string(&j).unwrap();
        let s: ComputeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(s.ignored_fields, expected);
    }
}
