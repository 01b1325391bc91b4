//! Runs one seed of one scenario: builds the world, applies the seed's fault
//! schedule while stepping the simulation, then checks the final invariants.

use std::time::Duration;

use compute_ctl::planted::Bug;
use serde_json::json;

use crate::faults::{self, FaultSet, Schedule};
use crate::names;
use crate::scenarios::{self, Scenario};
use crate::world;
use crate::world::shared::Shared;

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub scenario: &'static str,
    pub schedule: Schedule,
    pub violations: Vec<String>,
    /// Simulated time the seed took.
    pub simulated: Duration,
    /// Faults of the schedule that started during the run.
    pub faults_fired: u64,
    /// The slowest answered skip-flag notify (client side), simulated µs.
    pub slowest_notify_us: Option<u64>,
    pub trace: String,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this seed.
    pub fn replay(&self) -> String {
        format!(
            "cargo run -p sim --release -- --seed {} --scenario {} --trace sim-{}.jsonl",
            self.seed, self.scenario, self.seed
        )
    }
}

/// The scenario seed `seed` runs when none is named: seeds go round the
/// rotation ([`scenarios::rotation`]: every scenario but the durable-primary
/// ones, which are named with `--scenario` and have their own smoke).
pub fn scenario_for(seed: u64) -> &'static Scenario {
    let all = scenarios::rotation();
    all[usize::try_from(seed % all.len() as u64).unwrap_or(0)]
}

/// Whether a run records its JSONL trace. The checks are the same either
/// way: no invariant reads the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    On,
    Off,
}

/// Which faults `scenario`'s schedules draw from: a durable primary's
/// safekeepers and its compute side where its world has them
/// (`Topology::durable`), else the compute's.
pub fn fault_set(seed: u64, scenario: &Scenario) -> FaultSet {
    if scenarios::QUIET.contains(&scenario.name) {
        FaultSet::Quiet
    } else if (scenario.topology)(seed).durable.is_some() {
        FaultSet::Durable
    } else {
        FaultSet::Compute
    }
}

/// `seed`'s own fault schedule for `scenario`.
pub fn schedule_for(seed: u64, scenario: &Scenario) -> Schedule {
    faults::schedule_of(seed, fault_set(seed, scenario))
}

/// Runs `scenario` with `seed`'s own fault schedule, traced.
pub fn run(seed: u64, scenario: &'static Scenario) -> SeedReport {
    run_with(
        seed,
        scenario,
        schedule_for(seed, scenario),
        None,
        Tracing::On,
    )
}

/// Runs `scenario` with `seed`, an explicit fault schedule and optionally a
/// planted bug (needs compute_ctl's `planted-bugs` feature). With
/// [`Tracing::Off`] the report's trace is empty.
pub fn run_with(
    seed: u64,
    scenario: &'static Scenario,
    schedule: Schedule,
    bug: Option<Bug>,
    tracing: Tracing,
) -> SeedReport {
    let planted = compute_ctl::planted::plant(bug);
    assert!(
        planted,
        "planting bugs needs compute_ctl's planted-bugs feature"
    );
    let report = run_planted(seed, scenario, schedule, tracing);
    compute_ctl::planted::plant(None);
    report
}

fn run_planted(
    seed: u64,
    scenario: &'static Scenario,
    schedule: Schedule,
    tracing: Tracing,
) -> SeedReport {
    let topology = (scenario.topology)(seed);
    if let Some(computes) = topology.fleet {
        // Many computes, no fault schedule (the scenario is the stress).
        return run_fleet(seed, scenario, computes, tracing);
    }
    let shared = Shared::new();
    if tracing == Tracing::Off {
        shared.lock().log.trace = crate::trace::Trace::off();
    }
    // The storage's durable catalog: what initdb left when the timeline was created.
    shared.lock().catalog.reset(names::SUPERUSER);
    let mut sim = world::build(seed, Duration::from_millis(2));
    world::add_storage(&mut sim, shared.clone());
    if let Some(delays) = &topology.durable {
        world::add_durable_safekeepers(&mut sim, shared.clone(), delays);
    }
    if topology.two_storages {
        world::add_storage2(&mut sim, shared.clone());
        world::add_safekeepers(&mut sim, shared.clone());
    }
    let second = topology.second_compute.then(|| {
        let r = Shared::new();
        if tracing == Tracing::Off {
            r.lock().log.trace = crate::trace::Trace::off();
        }
        r.lock().catalog.reset(names::SUPERUSER);
        r.lock().wal.enabled = true;
        r.lock().storage_world = Some(shared.clone());
        shared.lock().second_compute = Some(r.clone());
        world::add_compute_on(
            &mut sim,
            names::REPLICA,
            r.clone(),
            seed ^ 0x5EC0_4D00,
            world::params_on(names::REPLICA),
            world::Boot {
                launch_spec: None,
                fetch_spec_from_cplane: false,
                autoscaling: false,
            },
        );
        r
    });
    let mut params = world::params();
    params.max_ready_lag = topology.max_ready_lag;
    world::add_compute(
        &mut sim,
        shared.clone(),
        seed,
        params,
        topology.spec.map(|s| s.spec()),
        topology.fetch_from_cplane,
        topology.autoscaling,
    );
    let driver_shared = shared.clone();
    let run_scenario = scenario.run;
    sim.client(names::CPLANE, async move {
        let driver = scenarios::Driver::new(driver_shared.clone(), seed);
        run_scenario(driver).await;
        Ok(())
    });
    shared.lock().log.trace.push(
        0,
        "seed",
        json!({"seed": seed, "scenario": scenario.name, "faults": schedule}),
    );
    // Start and end actions in time order.
    let mut actions: Vec<(u64, bool, usize)> = Vec::new();
    for (i, f) in schedule.faults.iter().enumerate() {
        actions.push((f.at_ms, true, i));
        actions.push((f.at_ms + f.for_ms, false, i));
    }
    actions.sort();
    let heal_at = Duration::from_millis(schedule.heal_at());
    let mut next = 0;
    let mut fired = 0u64;
    let mut healed = false;
    loop {
        let now = sim.elapsed();
        while next < actions.len() && Duration::from_millis(actions[next].0) <= now {
            let (_, start, i) = actions[next];
            world::inject::apply(&mut sim, &shared, &schedule.faults[i], start);
            fired += u64::from(start);
            next += 1;
        }
        let asked: Vec<(String, bool)> = std::mem::take(&mut shared.lock().harness.host_actions);
        for (host, crash) in asked {
            if crash {
                sim.crash(host.as_str());
            } else if !sim.is_host_running(host.as_str()) {
                sim.bounce(host.as_str());
            }
        }
        if !healed && now >= heal_at {
            world::inject::heal(&mut sim, &shared);
            let t = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
            shared.lock().harness.healed_at = Some(t);
            shared.emit_at(t, crate::events::Event::Healed);
            healed = true;
        }
        if step(&mut sim, &shared) {
            break;
        }
    }
    let simulated = sim.elapsed();
    shared.lock().harness.end_us = u64::try_from(simulated.as_micros()).unwrap_or(u64::MAX);
    shared.finish();
    if let Some(r) = second {
        // Its own checkers (transitions, one postmaster per boot, ...),
        // reported as this world's; then the two records let go of each other.
        r.check_at_end();
        let found = std::mem::take(&mut r.lock().log.violations);
        for what in found {
            shared.violation(format!("{}: {what}", names::REPLICA));
        }
        r.lock().storage_world = None;
        shared.lock().second_compute = None;
        r.let_go_of_compute();
    }
    // Drop the world (and the tasks holding `shared`) before reading out.
    drop(sim);
    shared.let_go_of_compute();
    shared.check_released();
    let sh = shared.lock();
    SeedReport {
        seed,
        scenario: scenario.name,
        schedule,
        violations: sh.log.violations.clone(),
        simulated,
        faults_fired: fired,
        slowest_notify_us: sh.harness.notify_round_trips_us.iter().copied().max(),
        trace: sh.log.trace.to_jsonl(),
    }
}

/// Runs one seed of a fleet scenario ([`scenarios::Topology::fleet`]): the
/// storage host, `computes` compute hosts ([`names::fleet_host`]) each with
/// its own record, the scenario on the `cplane` host driving them all. Each
/// compute's violations are reported under its host name.
fn run_fleet(
    seed: u64,
    scenario: &'static Scenario,
    computes: usize,
    tracing: Tracing,
) -> SeedReport {
    let cplane = Shared::new();
    let fleet: Vec<Shared> = (0..computes).map(|_| Shared::new()).collect();
    for sh in std::iter::once(&cplane).chain(&fleet) {
        if tracing == Tracing::Off {
            sh.lock().log.trace = crate::trace::Trace::off();
        }
    }
    let mut sim = world::build(seed, Duration::from_millis(2));
    world::add_storage(&mut sim, Shared::new());
    for (k, sh) in fleet.iter().enumerate() {
        sh.lock().catalog.reset(names::SUPERUSER);
        world::add_compute_on(
            &mut sim,
            &names::fleet_host(k),
            sh.clone(),
            seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            world::params(),
            world::Boot {
                launch_spec: None,
                fetch_spec_from_cplane: false,
                autoscaling: false,
            },
        );
    }
    cplane.lock().log.trace.push(
        0,
        "seed",
        json!({"seed": seed, "scenario": scenario.name, "computes": computes}),
    );
    let driver = scenarios::Driver::new(cplane.clone(), seed).with_fleet(fleet.clone());
    let run_scenario = scenario.run;
    sim.client(names::CPLANE, async move {
        run_scenario(driver).await;
        Ok(())
    });
    while !step(&mut sim, &cplane) {}
    let simulated = sim.elapsed();
    let end = u64::try_from(simulated.as_micros()).unwrap_or(u64::MAX);
    for sh in &fleet {
        sh.lock().harness.end_us = end;
        sh.finish();
    }
    drop(sim);
    for sh in std::iter::once(&cplane).chain(&fleet) {
        sh.let_go_of_compute();
        sh.check_released();
    }
    let mut violations = cplane.lock().log.violations.clone();
    let mut slowest = None;
    for (k, sh) in fleet.iter().enumerate() {
        let s = sh.lock();
        violations.extend(
            s.log
                .violations
                .iter()
                .map(|v| format!("{}: {v}", names::fleet_host(k))),
        );
        slowest = slowest.max(s.harness.notify_round_trips_us.iter().copied().max());
    }
    let mut trace = cplane.lock().log.trace.to_jsonl();
    for sh in &fleet {
        trace.push_str(&sh.lock().log.trace.to_jsonl());
    }
    SeedReport {
        seed,
        scenario: scenario.name,
        schedule: Schedule { faults: Vec::new() },
        violations,
        simulated,
        faults_fired: 0,
        slowest_notify_us: slowest,
        trace,
    }
}

/// One step of `sim`; true once it is over: every client done, or a
/// simulation error (recorded as a violation of `shared`).
fn step(sim: &mut turmoil::Sim<'_>, shared: &Shared) -> bool {
    match sim.step() {
        Ok(done) => done,
        Err(e) => {
            shared.violation(format!("simulation error: {e}"));
            true
        }
    }
}
