//! `sim --jobs N`: a campaign split over worker processes reports exactly
//! what one process reports (verdicts, failing seeds with their replay
//! commands, the summary table, the trace), whatever N.

use std::process::Command;

/// Runs the sim binary; returns (stdout without the timing line, success).
fn sim(args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("the sim binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("worker"),
        "a worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.contains(" seeds/s, "))
        .collect();
    (kept.join("\n"), out.status.success())
}

#[test]
fn a_campaign_gives_the_same_results_and_trace_for_any_number_of_jobs() {
    let dir = std::env::temp_dir().join(format!("sim-jobs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = |n: u32| dir.join(format!("t{n}.jsonl"));
    let t1 = trace(1).display().to_string();
    let t3 = trace(3).display().to_string();
    let (one, ok1) = sim(&["--seeds", "24", "--first", "100", "--trace", &t1]);
    let (three, ok3) = sim(&[
        "--seeds", "24", "--first", "100", "--jobs", "3", "--trace", &t3,
    ]);
    let (a, b) = (
        std::fs::read(trace(1)).unwrap(),
        std::fs::read(trace(3)).unwrap(),
    );
    let parts_left = std::fs::read_dir(&dir).unwrap().count();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok1 && ok3, "{one}\n---\n{three}");
    assert_eq!(one, three);
    assert!(one.contains("24 passed, 0 failed"), "{one}");
    assert!(one.contains("total"), "the summary table is printed: {one}");
    assert!(a == b && !a.is_empty(), "the traces differ");
    assert_eq!(parts_left, 2, "the workers' trace parts were removed");
}

#[test]
fn failing_seeds_and_their_replay_commands_do_not_depend_on_jobs() {
    let args = [
        "--seeds",
        "10",
        "--scenario",
        "notify_after_migration",
        "--plant",
        "CatalogDespiteSkipFlag",
    ];
    let (one, ok1) = sim(&args);
    let (four, ok4) = sim(&[&args[..], &["--jobs", "4"]].concat());
    assert!(!ok1 && !ok4, "the planted bug makes the campaign fail");
    assert_eq!(one, four);
    let fails: Vec<&str> = one
        .lines()
        .filter(|l| l.starts_with("FAIL seed "))
        .collect();
    assert!(!fails.is_empty(), "{one}");
    for f in &fails {
        assert!(
            f.contains("replay: cargo run -p sim --release --features compute_ctl/planted-bugs -- --plant CatalogDespiteSkipFlag --seed "),
            "{f}"
        );
    }
}
