//! What the postgres binary says about its settings is kept across starts
//! (`--settings-cache`): a start on a binary met before spawns no
//! `postgres --version`, `--describe-config` or `postgres -C` beside its
//! base backup; a cache of another build of the binary is not used; and
//! `--write-settings-cache` fills one for an image build.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use serde_json::Value;

use crate::setting_values::{judged_by_binary, with_setting};
use crate::support::compute::{Compute, ComputeOpts};
use crate::support::{fixture, postgres_bin};
use compute_ctl::pg::settings_cache::cache_file;

fn with_cache(op: &str, cache: &Path) -> ComputeOpts {
    let mut spec = fixture("spec.json");
    spec["operation_uuid"] = op.into();
    let mut opts = ComputeOpts::with_spec(spec);
    opts.args = vec!["--settings-cache".into(), cache.display().to_string()];
    opts
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("the cache file is JSON")
}

/// `compute_ctl --write-settings-cache` of the test binary into `dir`.
fn write_settings_cache(dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .arg("--write-settings-cache")
        .arg("-b")
        .arg(postgres_bin())
        .arg("--settings-cache")
        .arg(dir)
        .output()
        .expect("run compute_ctl --write-settings-cache")
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).expect("write the cache file");
}

#[tokio::test]
async fn a_start_on_a_binary_met_before_asks_it_nothing() {
    crate::need_postgres!();
    let cache = tempfile::tempdir().expect("temp dir");
    let first = Compute::start(with_cache("op-first", cache.path()));
    first.wait_running().await;
    // The fixture's shared_buffers (a unit to learn) and password_encryption
    // (an enum value to judge); the other memory setting is maintenance's.
    assert!(
        judged_by_binary(&first).await > 0,
        "the first start asked nothing"
    );
    let file = cache_file(cache.path(), &postgres_bin());
    let written = read_json(&file);
    assert!(
        written["units"]["shared_buffers"].is_object(),
        "shared_buffers' unit was not kept: {}",
        written["units"]
    );
    assert!(
        written["describe_config"]
            .as_str()
            .unwrap()
            .contains("work_mem\t")
    );
    drop(first);

    let second = Compute::start(with_cache("op-second", cache.path()));
    second.wait_running().await;
    assert_eq!(
        judged_by_binary(&second).await,
        0,
        "a start on the same binary asked it again"
    );
    assert!(second.log().contains("from_cache=true"), "{}", second.log());
    assert_eq!(second.sql_value("SHOW shared_buffers").await, "128MB");
    // The cache settles only what the binary said: a value out of range is
    // still refused in Postgres' words.
    let bad = with_setting("op-bad", "maintenance_work_mem", "1kB", "string");
    let r = second.configure(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("outside the valid range"), "{}", r.text);
}

#[tokio::test]
async fn a_cache_of_another_build_of_the_binary_is_not_used() {
    crate::need_postgres!();
    let cache = tempfile::tempdir().expect("temp dir");
    let first = Compute::start(with_cache("op-first", cache.path()));
    first.wait_running().await;
    drop(first);
    let file = cache_file(cache.path(), &postgres_bin());
    let truth = read_json(&file);
    // A listing in which work_mem's maximum is 100 (kB): a bound the real
    // binary does not have, so which listing was used shows.
    let listing = truth["describe_config"].as_str().unwrap();
    let line = listing
        .lines()
        .find(|l| l.starts_with("work_mem\t"))
        .expect("work_mem is listed");
    let narrowed: Vec<String> = line
        .split('\t')
        .enumerate()
        .map(|(i, f)| if i == 6 { "100".into() } else { f.to_string() })
        .collect();
    let mut planted = truth.clone();
    planted["describe_config"] = listing.replace(line, &narrowed.join("\t")).into();
    let over = with_setting("op-over", "work_mem", "1000", "integer");

    // The same build: the file is trusted.
    write_json(&file, &planted);
    let c = Compute::start(with_cache("op-same", cache.path()));
    c.wait_running().await;
    let r = c.configure(&over, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("above its maximum 100"), "{}", r.text);
    drop(c);

    // One nanosecond off: another build. The binary is asked, its bound
    // holds, and the file is rewritten with what it said.
    planted["stamp"]["modified_ns"] = (truth["stamp"]["modified_ns"].as_u64().unwrap() + 1).into();
    write_json(&file, &planted);
    let c = Compute::start(with_cache("op-other", cache.path()));
    c.wait_running().await;
    let r = c.configure(&over, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.sql_value("SHOW work_mem").await, "1000kB");
    let rewritten = read_json(&file);
    assert_eq!(rewritten["stamp"], truth["stamp"]);
    assert_eq!(rewritten["describe_config"], truth["describe_config"]);
}

#[tokio::test]
async fn write_settings_cache_learns_every_unit_for_an_image() {
    crate::need_postgres!();
    let cache = tempfile::tempdir().expect("temp dir");
    let dir = cache.path().join("settings");
    let out = write_settings_cache(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = cache_file(&dir, &postgres_bin());
    assert!(stdout.contains(&file.display().to_string()), "{stdout}");
    let units = read_json(&file)["units"].clone();
    let units = units.as_object().expect("units");
    let with_unit = units.values().filter(|u| u.is_object()).count();
    assert!(
        with_unit >= 40,
        "only {with_unit} base units learnt: {units:?}"
    );
    assert!(units["work_mem"].is_object() && units["checkpoint_timeout"].is_object());
    assert!(
        units["max_connections"].is_null(),
        "max_connections takes no unit"
    );

    // A start from that cache learns no unit: only the enum value is asked.
    let c = Compute::start(with_cache("op-image", &dir));
    c.wait_running().await;
    assert_eq!(judged_by_binary(&c).await, 1, "{}", c.log());

    // Where nothing can be written, it says so and fails.
    let out = write_settings_cache(Path::new("/proc/compute_ctl-settings"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the settings cache"),
        "{stderr}"
    );
}

/// A cache that cannot be written (a read-only root file system, a pod's
/// user) costs a start nothing but a log line: the compute runs. It is
/// tried again only when the binary was asked something new, never by a
/// notify that asks it nothing.
#[tokio::test]
async fn an_unwritable_cache_is_not_retried_by_notifies_that_ask_nothing() {
    crate::need_postgres!();
    let c = Compute::start(with_cache("op-ro", Path::new("/proc/compute_ctl-settings")));
    c.wait_running().await;
    let tries = |c: &Compute| c.log().matches("cannot write the settings cache").count();
    assert_eq!(tries(&c), 1, "{}", c.log());
    let notify = |i: usize, value: &str| {
        let mut spec = with_setting(&format!("op-ro-{i}"), "work_mem", value, "string");
        spec["skip_pg_catalog_updates"] = true.into();
        spec
    };
    // The first work_mem learns its unit from the binary: a new answer.
    let r = c.configure(&notify(0, "5MB"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after_first = tries(&c);
    assert_eq!(after_first, 2, "{}", c.log());
    let asked = judged_by_binary(&c).await;
    for (i, value) in [(1, "6MB"), (2, "7MB")] {
        let r = c.configure(&notify(i, value), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(c.sql_value("SHOW work_mem").await, "7MB");
    assert_eq!(
        judged_by_binary(&c).await,
        asked,
        "a plain value asked the binary"
    );
    assert_eq!(tries(&c), after_first, "{}", c.log());
}
