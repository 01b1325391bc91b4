//! Detection power: each known bug planted in the library is caught by the
//! invariants within 1,000 seeds (and, as the smoke set shows, the same
//! seeds pass without it).

use compute_ctl::planted::Bug;
use sim::faults;
use sim::runner::{self, Tracing};

/// The first seed (of 1,000) whose run catches `bug`, with its violation.
fn first_catch(bug: Bug) -> Option<(u64, String)> {
    (0..1000).find_map(|seed| {
        let scenario = runner::scenario_for(seed);
        let report = runner::run_with(
            seed,
            scenario,
            faults::schedule(seed),
            Some(bug),
            Tracing::Off,
        );
        (!report.passed()).then(|| (seed, report.violations.join("; ")))
    })
}

/// `bug` is caught, and the violation names every one of `expect` (the
/// real reason, not just any failure).
fn assert_caught(bug: Bug, expect: &[&str]) {
    let (seed, why) = first_catch(bug).unwrap_or_else(|| panic!("{bug:?} survived 1,000 seeds"));
    eprintln!("{bug:?} caught by seed {seed}: {why}");
    for e in expect {
        assert!(
            why.contains(e),
            "{bug:?} caught for an unexpected reason (no {e:?}): {why}"
        );
    }
}

#[test]
fn catalog_work_despite_the_skip_flag_is_caught() {
    assert_caught(
        Bug::CatalogDespiteSkipFlag,
        &[
            "skip-flag notify",
            "catalog/reload statement",
            "json_build_object('roles'",
        ],
    );
}

#[test]
fn reload_via_sql_is_caught() {
    assert_caught(
        Bug::ReloadViaSql,
        &["skip-flag notify", "first: SELECT pg_reload_conf()"],
    );
}

#[test]
fn no_statement_timeout_is_caught() {
    // A hung statement without a server-side timeout never ends: the
    // compute never leaves the phase that sent it.
    assert_caught(
        Bug::NoStatementTimeout,
        &["did not settle within 180s after faults stopped"],
    );
}

#[test]
fn non_idempotent_apply_is_caught() {
    assert_caught(
        Bug::NonIdempotentApply,
        &[
            "failed although no fault could explain it",
            "already exists",
        ],
    );
}

#[test]
fn a_downscale_without_the_buffer_is_caught() {
    assert_caught(
        Bug::DownscaleWithoutBuffer,
        &["vm-monitor accepted a downscale", "+ 100 MiB buffer"],
    );
}

/// A failing schedule shrinks (proptest's value tree) to one that still
/// fails and is no bigger.
#[test]
fn a_failing_schedule_shrinks_and_still_fails() {
    let bug = Bug::NoStatementTimeout;
    let (seed, _) = first_catch(bug).expect("caught within 1,000 seeds");
    let scenario = runner::scenario_for(seed);
    let original = faults::schedule(seed);
    let fails = |s: &faults::Schedule| {
        !runner::run_with(seed, scenario, s.clone(), Some(bug), Tracing::Off).passed()
    };
    let shrunk = faults::shrink(seed, fails, 24);
    assert!(
        shrunk.faults.len() <= original.faults.len(),
        "{shrunk:?} vs {original:?}"
    );
    assert!(
        fails(&shrunk),
        "the shrunk schedule {shrunk:?} must still fail"
    );
    assert!(
        runner::run_with(seed, scenario, shrunk.clone(), None, Tracing::Off).passed(),
        "without the bug the shrunk schedule passes"
    );
}

/// The first seed (of 1,000) of `scenario` whose run catches `bug`, with
/// its violations: the durable-primary bugs only show where a primary has
/// safekeepers, so their search stays in that scenario.
fn first_catch_in(bug: Bug, scenario: &str) -> Option<(u64, String)> {
    let s = sim::scenarios::find(scenario).expect("a known scenario");
    (0..1000).find_map(|seed| {
        let report = runner::run_with(
            seed,
            s,
            runner::schedule_for(seed, s),
            Some(bug),
            Tracing::Off,
        );
        (!report.passed()).then(|| (seed, report.violations.join("; ")))
    })
}

fn assert_caught_in(bug: Bug, scenario: &str, expect: &[&str]) {
    let (seed, why) = first_catch_in(bug, scenario)
        .unwrap_or_else(|| panic!("{bug:?} survived 1,000 seeds of {scenario}"));
    eprintln!("{bug:?} caught by seed {seed} of {scenario}: {why}");
    assert!(seed < 1000);
    for e in expect {
        assert!(
            why.contains(e),
            "{bug:?} caught for an unexpected reason (no {e:?}): {why}"
        );
    }
}

#[test]
fn an_acknowledgement_before_the_quorum_is_caught() {
    assert_caught_in(
        Bug::AckBeforeQuorum,
        "durable_kill_and_move",
        &["was acknowledged without a majority flush", "2 needed"],
    );
}

/// The catch-up behind the most advanced safekeeper forks the new
/// timeline below that safekeeper's WAL: caught either by the fork checker
/// or, when that safekeeper missed the sync, by the compute's own
/// diagnosis of it once the start waits for its quorum.
#[test]
fn a_catch_up_behind_the_most_advanced_safekeeper_is_caught() {
    let (seed, why) = first_catch_in(Bug::BackupBehindSafekeepers, "durable_kill_and_move")
        .expect("BackupBehindSafekeepers survived 1,000 seeds of durable_kill_and_move");
    eprintln!("BackupBehindSafekeepers caught by seed {seed}: {why}");
    let by_checker = why.contains("a start left a reachable safekeeper diverged")
        && why.contains("where timeline");
    let by_diagnosis = why.contains("diverged, its WAL reaches")
        && why.contains("past where this compute's timeline");
    assert!(
        by_checker || by_diagnosis,
        "BackupBehindSafekeepers caught for an unexpected reason (no safekeeper left past the fork): {why}"
    );
}

#[test]
fn a_start_without_a_timeline_switch_is_caught() {
    assert_caught_in(
        Bug::SkipTimelineSwitch,
        "durable_kill_and_move",
        &[
            "two WAL histories mixed on safekeeper",
            "does not continue its own",
        ],
    );
}
