//! The simulator's smoke set: 200 seeds over every scenario must pass, and
//! the same seeds must give byte-identical traces in two separate processes.

use std::process::Command;

use sim::runner;

#[test]
fn two_hundred_seeds_over_all_scenarios_pass() {
    let mut failures = Vec::new();
    let mut scenarios = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let report = runner::run(seed, runner::scenario_for(seed));
        scenarios.insert(report.scenario);
        if !report.passed() {
            failures.push(format!(
                "seed {seed} ({}): {:?}\n  replay: {}",
                report.scenario,
                report.violations,
                report.replay()
            ));
        }
    }
    assert_eq!(
        scenarios.len(),
        sim::scenarios::rotation().len(),
        "every scenario of the rotation ran"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The durable-primary scenarios (not in the rotation): their first seeds.
#[test]
fn durable_primary_scenarios_pass() {
    const SEEDS: u64 = 12;
    let mut failures = Vec::new();
    for name in sim::scenarios::DURABLE {
        let scenario = sim::scenarios::find(name).expect("a listed scenario");
        let mut fired = 0;
        for seed in 0..SEEDS {
            let report = runner::run_with(
                seed,
                scenario,
                runner::schedule_for(seed, scenario),
                None,
                runner::Tracing::Off,
            );
            fired += report.faults_fired;
            if !report.passed() {
                failures.push(format!(
                    "seed {seed} ({name}): {:?}\n  replay: {}",
                    report.violations,
                    report.replay()
                ));
            }
        }
        // Their schedules reach the safekeepers.
        if !sim::scenarios::QUIET.contains(name) {
            assert!(
                fired > 0,
                "no safekeeper fault fired in {SEEDS} seeds of {name}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And a seed replays to the same trace.
    let s = sim::scenarios::find(sim::scenarios::DURABLE[0]).expect("listed");
    assert_eq!(runner::run(3, s).trace, runner::run(3, s).trace);
}

fn traces_of_a_separate_process(seeds: u64, path: &std::path::Path) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["--seeds", &seeds.to_string(), "--trace"])
        .arg(path)
        .output()
        .expect("the sim binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sim failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{seeds} passed, 0 failed")),
        "{stdout}"
    );
    std::fs::read(path).expect("the trace was written")
}

#[test]
fn same_seeds_give_byte_identical_traces_across_processes() {
    let dir = std::env::temp_dir().join(format!("sim-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = traces_of_a_separate_process(50, &dir.join("a.jsonl"));
    let b = traces_of_a_separate_process(50, &dir.join("b.jsonl"));
    let _ = std::fs::remove_dir_all(&dir);
    let lines = a.iter().filter(|c| **c == b'\n').count();
    assert!(
        lines > 50 * 10,
        "the traces are substantial ({lines} lines)"
    );
    if a != b {
        let (la, lb) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        let first = la
            .lines()
            .zip(lb.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        panic!(
            "traces differ at line {first}:\n  {}\n  {}",
            la.lines().nth(first).unwrap_or(""),
            lb.lines().nth(first).unwrap_or("")
        );
    }
}

#[test]
fn a_seed_replays_to_the_same_trace_in_process() {
    let s = runner::scenario_for(2);
    assert_eq!(runner::run(2, s).trace, runner::run(2, s).trace);
}

/// Seeds that once failed: (seed, scenario, what went wrong). They must
/// keep passing.
const ONCE_FAILED: &[(u64, &str, &str)] = &[
    (
        80_953,
        "memory_pressure",
        // The agent's link was held while the monitor's answer to a downscale
        // was in flight: the monitor decided on what it measured before the
        // hold, the invariant judged it by the usage when the answer arrived
        // 1.3 s later (found by the 100,000-seed campaign).
        "a downscale answer delayed by a held link",
    ),
    (
        3_949,
        "reconfigure_catalog",
        // The step that lets the check's backend take its pending reloads
        // opened the check's session itself when none was open, with its own
        // 1 s statement timeout; the check then ran on that session and was
        // cancelled under 1.3 s slow queries (found by a 6,000-seed campaign).
        "the check's session opened with a 1 s statement timeout",
    ),
    (
        5_747,
        "durable_safekeeper_move",
        // A move's last reload did not take under `reload_fails`: the joint
        // quorum (old and new members) stayed in force behind the 200, and a
        // later failed move put back the confirmed set instead of what was in
        // force. The new set's quorum is now shown in force, the reload
        // signalled again until it is (found by a 1,000-seed campaign).
        "a move answered 200 with the joint quorum still in force",
    ),
    (
        35_339,
        "durable_safekeeper_move",
        // The start's 200 left during a latency spike from a host that then
        // crashed, and arrived after it booted Empty; the read-back was
        // excused only by a crash after the answer's arrival (the driver now
        // counts from the send; found by a 20,000-seed campaign).
        "a 200 in flight across a host crash",
    ),
    (
        42_975,
        "durable_kill_and_move",
        // A start died after its promotion with its WAL on one safekeeper;
        // the next, unable to reach it and knowing no such timeline,
        // promoted onto the same number, and that safekeeper appended the
        // new primary's WAL after the old one's. Timelines are now claimed
        // on a majority first (found by a 23,000-seed campaign).
        "a timeline number reused after a start died before its quorum",
    ),
    (
        71_779,
        "durable_kill_and_move",
        // The model ranked a safekeeper by a timeline whose history it had
        // fetched but none of whose WAL it held, and the start forked behind
        // two safekeepers' acknowledged commits; a safekeeper now reports
        // its newest segment's timeline, as Postgres does (found by a
        // 23,000-seed campaign).
        "a safekeeper ranked by a history file without WAL",
    ),
    (
        802_165,
        "durable_kill_and_move",
        // A start joined the empty branch a dead start left, then waited for
        // each safekeeper to replay its checkpoint (a restartpoint past the
        // fork) before `running`; the checker took those position answers,
        // past the fork on our own timeline, for the sync's. Answers after
        // the boot's promotion no longer count as its sync (found by a
        // 10,000-seed campaign).
        "position answers after the promotion read as the sync's",
    ),
    (
        2_005_047,
        "durable_kill_and_move",
        // A lagging safekeeper flushed a dead primary's WAL on timeline 3
        // after a later start forked timeline 4 from it; the next start
        // compared that WAL only with its own fork point (further on), and
        // reported the safekeeper `catching_up`. It is now compared with
        // where timeline 3 ended in the compute's own history (its history
        // file), and reported `diverged`; the driver's storage re-clones
        // what a failed start reported before starting it again (found by
        // a 20,000-seed campaign; `checkers/diverged_report.rs`).
        "WAL past an older fork on an ancestor timeline read as catching up",
    ),
    (
        6_000_518,
        "duplicated_reordered_notifies",
        // A notify was sent while the start, whose client had given up on
        // it, still created databases; the checker took those statements,
        // inside the notify's window, for the notify's. A notify sent while
        // the compute is not `running` is now judged from the moment the
        // operation under way ended (found by a 6,000-seed campaign).
        "a start's catalog statements inside a notify's window",
    ),
];

#[test]
fn seeds_that_once_failed_pass() {
    for &(seed, scenario, why) in ONCE_FAILED {
        let report = runner::run(seed, sim::scenarios::find(scenario).expect("scenario"));
        assert!(
            report.passed(),
            "seed {seed} ({why}): {:?}\n  replay: {}",
            report.violations,
            report.replay()
        );
    }
}

/// A boot whose image has the settings cache (every other one) asks the
/// simulated binary nothing; the others ask it once and fill their own.
#[test]
fn a_boot_from_an_image_with_the_settings_cache_asks_the_binary_nothing() {
    let scenario = sim::scenarios::find("durable_kill_and_move").expect("a scenario");
    let trace = runner::run(5, scenario).trace;
    let mut boot = None;
    let mut asked: std::collections::BTreeMap<u64, usize> = Default::default();
    for line in trace.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).expect("a JSON trace line");
        if ev["ev"] == "boot" && ev["host"] == "compute" {
            boot = ev["boot"].as_u64();
            asked.insert(boot.expect("a boot number"), 0);
        }
        let cmd = ev["cmd"].as_str().unwrap_or("");
        if let Some(b) = boot
            && (cmd.ends_with("postgres --describe-config") || cmd.ends_with("postgres --version"))
        {
            *asked.entry(b).or_default() += 1;
        }
    }
    assert!(
        asked.len() >= 3,
        "the seed booted the compute {} times",
        asked.len()
    );
    for (boot, n) in asked {
        let expected = if boot % 2 == 1 { 0 } else { 2 };
        assert_eq!(n, expected, "boot {boot} asked the binary {n} times");
    }
}
