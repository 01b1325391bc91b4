//! `compute_ctl --validate-spec`: the real binary on real fixtures.

use crate::support;

use std::process::Command;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn validate(path: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .args(["--validate-spec", path])
        .env_remove("COMPUTE_CTL_CONNSTR")
        .output()
        .expect("run compute_ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn neon_fixture_is_valid() {
    let Some(path) = support::neon::path("cluster_spec.json") else {
        return;
    };
    let (code, stdout, _) = validate(path.to_str().expect("a UTF-8 path"));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("valid"));
}

#[test]
fn our_fixtures_are_valid() {
    for f in [
        "spec.json",
        "spec_minimal.json",
        "spec_many.json",
        "notify.json",
    ] {
        let (code, stdout, stderr) = validate(&fixture(f));
        assert_eq!(code, 0, "{f}: {stdout}{stderr}");
    }
}

#[test]
fn three_mistakes_are_all_reported_with_paths_and_exit_2() {
    let (code, stdout, _) = validate(&fixture("invalid_three_mistakes.json"));
    assert_eq!(code, 2, "{stdout}");
    for path in [
        "$.format_version",
        "$.cluster.roles[2].name",
        "$.cluster.settings[6].name",
    ] {
        assert!(stdout.contains(path), "missing {path} in:\n{stdout}");
    }
    assert!(stdout.contains("3 problem(s)"), "{stdout}");
}

#[test]
fn malformed_json_exits_2_and_a_missing_file_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"format_version\": 1.0, \"cluster\": ").unwrap();
    let (code, stdout, _) = validate(bad.to_str().unwrap());
    assert_eq!(code, 2);
    assert!(stdout.contains("not valid JSON"), "{stdout}");

    let (code, _, stderr) = validate(dir.path().join("nope.json").to_str().unwrap());
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read spec file"), "{stderr}");
}
