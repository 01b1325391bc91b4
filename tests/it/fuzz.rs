//! Fuzzing with proptest (issue 15, item 4; no nightly toolchain can be
//! installed here, so no cargo-fuzz): the spec parser and validator on
//! arbitrary bytes and on mutated valid specs, and the config renderer
//! against Postgres' own parser on real Postgres 15.
//!
//! Case counts: small by default (`just test`), large with
//! `COMPUTE_CTL_CHAOS_SCALE=full` (`just chaos`). A panic anywhere is a
//! failing case that proptest shrinks and prints. With
//! `COMPUTE_CTL_CHAOS_REPORT=DIR`, the counts go to `DIR/fuzz.jsonl`.
#![allow(clippy::disallowed_methods)]

use crate::support;

use crate::support::postgres::TestPostgres;
use compute_ctl::pg::render_value;
use compute_ctl::spec::{ComputeSpec, ValidationContext};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Reports a proptest run: its cases, and whether one failed (a panic or a
/// broken property, shrunk and printed by proptest); then fails the test
/// with it.
fn report<T: std::fmt::Debug>(case: &str, cases: u32, run: Result<(), T>) {
    let crashes = u32::from(run.is_err());
    let line = json!({"suite": "fuzz", "case": case, "cases": cases, "crashes": crashes});
    support::chaos::report("fuzz", &line);
    run.unwrap();
}

fn ctx() -> ValidationContext {
    ValidationContext {
        superuser: "cloud_admin".into(),
    }
}

/// Pieces that break naive parsers and quoting.
const HOSTILE: &[&str] = &[
    "",
    "a",
    "'",
    "\"",
    "\\",
    "\\u0000",
    "$$",
    ";",
    "--",
    "/*",
    "\n",
    "\r",
    "\t",
    "é",
    "🐘",
    "\u{feff}",
    "%s",
    "{",
    "[",
    "null",
    "1e400",
    "-0",
    "md5",
    "SCRAM-SHA-256$",
    "cloud_admin",
    "postgres",
    "template0",
    "pg_",
    "neon.",
    "max_connections",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HOSTILE), 0..12).prop_map(|p| p.concat())
}

/// A random JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the node at `path` (indices into arrays/objects, taken modulo
/// their length) with `with`.
fn mutate(v: &mut Value, path: &[usize], with: Value) {
    let Some((&i, rest)) = path.split_first() else {
        *v = with;
        return;
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[i % n], rest, with)
        }
        Value::Object(o) if !o.is_empty() => {
            let n = o.len();
            let key = o.keys().nth(i % n).cloned().unwrap();
            mutate(o.get_mut(&key).unwrap(), rest, with)
        }
        other => *other = with,
    }
}

fn base_spec() -> Value {
    support::fixture("spec.json")
}

fn runner(smoke: u32, big: u32) -> (TestRunner, u32) {
    let cases = if support::chaos::full() { big } else { smoke };
    (
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }),
        cases,
    )
}

#[test]
fn arbitrary_bytes_never_panic_the_parser() {
    let (mut r, cases) = runner(2_000, 100_000);
    let run = r.run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let _ = ComputeSpec::parse_and_validate(&text, &ctx());
        Ok(())
    });
    report("spec parser: arbitrary bytes", cases, run);
}

#[test]
fn mutated_specs_never_panic_and_what_is_accepted_round_trips() {
    let base = base_spec();
    assert!(
        ComputeSpec::parse_and_validate(&base.to_string(), &ctx()).is_ok(),
        "the base fixture must be valid for the mutations to mean anything"
    );
    let (mut r, cases) = runner(1_000, 50_000);
    let strategy = (
        prop::collection::vec(prop::collection::vec(any::<usize>(), 0..6), 1..4),
        prop::collection::vec(json_value(), 1..4),
    );
    let accepted = std::cell::Cell::new(0u32);
    let run = r.run(&strategy, |(paths, values)| {
        let mut spec = base.clone();
        for (p, v) in paths.iter().zip(values) {
            mutate(&mut spec, p, v);
        }
        let text = spec.to_string();
        if let Ok(parsed) = ComputeSpec::parse_and_validate(&text, &ctx()) {
            accepted.set(accepted.get() + 1);
            // What we accept, we can write down and read back the same.
            let again = serde_json::to_string(&parsed).unwrap();
            let reparsed = ComputeSpec::parse_and_validate(&again, &ctx()).map_err(|e| {
                TestCaseError::fail(format!("accepted, then refused its own serialisation: {e}"))
            })?;
            // `ignored_fields` records what the parse did not use; the
            // serialisation drops those fields, so only the content compares.
            let (mut reparsed, mut parsed) = (reparsed, parsed);
            reparsed.ignored_fields.clear();
            parsed.ignored_fields.clear();
            prop_assert_eq!(reparsed, parsed);
        }
        Ok(())
    });
    eprintln!("{} of {cases} mutated specs were accepted", accepted.get());
    report("spec parser + validator: mutated specs", cases, run);
}

/// Every value a spec may carry (no NUL, CR or LF: validation refuses
/// those) is written so that Postgres reads back exactly the input.
#[tokio::test]
async fn config_values_read_back_exactly_from_real_postgres() {
    crate::need_postgres!();
    let n = if support::chaos::full() { 2_000 } else { 200 };
    let mut r = TestRunner::new(Config {
        cases: 1,
        failure_persistence: None,
        ..Config::default()
    });
    let chars = prop_oneof![
        prop::sample::select(vec![
            '\'', '\\', '"', '#', '=', ' ', '\t', '$', ',', 'é', '🐘', 'a', '0', 'b', 'n', 'x'
        ]),
        any::<char>().prop_filter("no NUL, CR or LF", |c| !matches!(c, '\0' | '\r' | '\n')),
    ];
    let value = prop::collection::vec(chars, 0..40).prop_map(|c| c.into_iter().collect::<String>());
    let values: Vec<(String, bool)> = prop::collection::vec((value, any::<bool>()), n)
        .new_tree(&mut r)
        .unwrap()
        .current();
    let pg = TestPostgres::start(&[]).await;
    let conf = pg.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    for (i, (v, is_string)) in values.iter().enumerate() {
        text.push_str(&format!("chaos.v{i} = {}\n", render_value(*is_string, v)));
    }
    std::fs::write(&conf, text).unwrap();
    let admin = pg.client("postgres").await;
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let errors: Vec<String> = admin
        .query(
            "SELECT format('line %s: %s = %s: %s', sourceline, name, setting, error) \
             FROM pg_file_settings WHERE error IS NOT NULL AND name LIKE 'chaos.%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let written = std::fs::read_to_string(&conf).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert!(
        errors.is_empty(),
        "Postgres could not parse rendered values: {errors:?}\n{}",
        errors
            .iter()
            .filter_map(|e| e
                .strip_prefix("line ")?
                .split(':')
                .next()?
                .parse::<usize>()
                .ok())
            .map(|n| format!("{:?}", lines.get(n - 1)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A new session sees the reloaded file.
    let client = support::wait_for(std::time::Duration::from_secs(10), "the reload", || async {
        let c = pg.client("postgres").await;
        let seen: Option<String> = c
            .query_one("SELECT current_setting('chaos.v0', true)", &[])
            .await
            .ok()?
            .get(0);
        (seen.as_deref() == Some(values[0].0.as_str())).then_some(c)
    })
    .await;
    for (i, (v, _)) in values.iter().enumerate() {
        let got: Option<String> = client
            .query_one(&format!("SELECT current_setting('chaos.v{i}', true)"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            got.as_deref(),
            Some(v.as_str()),
            "value {i} came back changed"
        );
    }
    report(
        "config renderer vs Postgres' parser",
        n as u32,
        Ok::<(), ()>(()),
    );
}
