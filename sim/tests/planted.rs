//! Detection power: each known bug planted in the library is caught by the
//! invariants within 1,000 seeds (and, as the smoke set shows, the same
//! seeds pass without it), or, for an incident random schedules seldom
//! reach, by its directed schedule, which passes without it.

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

/// The incident behind timeline claims, as a directed schedule (random
/// schedules seldom kill a start between its promotion and its quorum
/// with exactly one safekeeper reached): safekeepers B and C are cut off
/// before compute 1 promotes onto timeline 2, so only A gets its WAL (its
/// end-of-recovery record) before the host crashes; A is cut off before
/// compute 2 starts, B and C come back. Unclaimed, compute 2 knows no
/// timeline 2 and promotes onto it again; A, which still points at the
/// compute's address, comes back and appends compute 2's WAL after compute
/// 1's. With the claim (taken on all three before the cut), compute 2
/// promotes onto 3 and A's request for timeline 2 is refused.
#[test]
fn a_promotion_onto_an_unclaimed_timeline_is_caught() {
    let schedule: faults::Schedule = serde_json::from_str(
        r#"{"faults":[
            {"at_ms":300,"for_ms":1200,"kind":"safekeeper_partition","sk":1},
            {"at_ms":300,"for_ms":1200,"kind":"safekeeper_partition","sk":2},
            {"at_ms":1350,"for_ms":3000,"kind":"safekeeper_partition","sk":0},
            {"at_ms":1400,"for_ms":200,"kind":"host_crash"}]}"#,
    )
    .expect("a fault schedule");
    let scenario = sim::scenarios::find("durable_kill_and_move").expect("a known scenario");
    let run = |bug| runner::run_with(1, scenario, schedule.clone(), bug, Tracing::Off);
    let clean = run(None);
    assert!(
        clean.passed(),
        "the schedule passes with claims: {:?}",
        clean.violations
    );
    let planted = run(Some(Bug::UnclaimedTimeline));
    let why = planted.violations.join("; ");
    assert!(
        why.contains("two WAL histories mixed on safekeeper sk1")
            && why.contains("does not continue its own"),
        "UnclaimedTimeline not caught by the directed schedule: {why:?}"
    );
}
