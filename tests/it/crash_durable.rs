//! The node dies at every phase of a durable primary's start and of a
//! safekeeper move, on real Postgres (issue 21, "Bad input and faults").
//!
//! One story runs every trial, on one set of three safekeepers (streaming
//! standbys, `support::safekeepers`) and a client that writes one row per
//! transaction and records each acknowledged one:
//!
//! - **a start phase** (`sync_safekeepers`, the base backup, `catch_up`,
//!   `promote`, `announce`, `quorum`): the running compute dies (kill -9
//!   of compute_ctl and of every Postgres of it), a new one starts on a new
//!   PGDATA and port with the failpoint of the phase, and dies there too, a
//!   seeded random part of the phase in (or at its end);
//! - **a move phase** (`safekeepers_joint`, `safekeepers_announce`,
//!   `safekeepers_catch_up`): a notify moves the running compute to another
//!   set (one member replaced by a fresh clone of another) while the client
//!   writes, and the node dies in the phase; the move never answered, so
//!   the control plane starts the next compute with the set it knew.
//!
//! Then a compute starts with no failpoint: every acknowledged row must be
//! there (lost rows are measured and must be 0) and a quorum must stream.
//! `just test` runs one start cell and one move cell, drawn from the seed
//! (`COMPUTE_CTL_CHAOS_SEED`, printed); `just chaos` (`COMPUTE_CTL_CHAOS_SCALE
//! =full`) every cell 20 times. Each trial is a row of `crash_durable.jsonl`.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::durable_primary::{insert, kill_everything, present, spec, wait_all_streaming};
use crate::support::chaos;
use crate::support::compute::{Compute, ComputeOpts};
use crate::support::failpoint::{self, stopped, wait_stopped};
use crate::support::postgres::TestPostgres;
use crate::support::safekeepers::Safekeepers;

const WITHIN: Duration = Duration::from_secs(90);
/// Rows the client writes (and has acknowledged) before each crash.
const ROWS_PER_TRIAL: i32 = 20;
/// The span a kill in a move phase is spread over: a whole move took
/// 70–100 ms on this machine (`last_reconfigure.safekeeper_move_ms`), and
/// a kill drawn past a phase lands at its end (the next failpoint stops
/// compute_ctl there).
const MOVE_WINDOW: Duration = Duration::from_millis(60);
/// The shortest window a kill is spread over.
const MIN_WINDOW: Duration = Duration::from_millis(3);

/// A phase, by the failpoint at its entry, the one that ends it, and the
/// timing that calibrates it (a `/metrics.json` field for a start's
/// phases, a field of the promote's answer for a promote's; none for a
/// move's phases). Shared with `crash_promote`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) end: &'static str,
    pub(crate) timing: Option<&'static str>,
}

impl Phase {
    fn is_move(&self) -> bool {
        self.name.starts_with("reconfigure.")
    }
}

const START_PHASES: [Phase; 6] = [
    Phase {
        name: "start.sync_safekeepers",
        end: "start.prepare_pgdata",
        timing: Some("sync_safekeepers_ms"),
    },
    Phase {
        name: "start.prepare_pgdata",
        end: "start.write_config",
        timing: Some("prepare_pgdata_ms"),
    },
    Phase {
        name: "start.catch_up",
        end: "start.promote",
        timing: Some("catch_up_ms"),
    },
    Phase {
        name: "start.promote",
        end: "start.announce",
        timing: Some("promote_ms"),
    },
    Phase {
        name: "start.announce",
        end: "start.quorum",
        timing: Some("announce_ms"),
    },
    Phase {
        name: "start.quorum",
        end: "start.catalog",
        timing: Some("quorum_ms"),
    },
];

const MOVE_PHASES: [Phase; 3] = [
    Phase {
        name: "reconfigure.safekeepers_joint",
        end: "reconfigure.safekeepers_announce",
        timing: None,
    },
    Phase {
        name: "reconfigure.safekeepers_announce",
        end: "reconfigure.safekeepers_catch_up",
        timing: None,
    },
    Phase {
        name: "reconfigure.safekeepers_catch_up",
        end: "reconfigure.write_config",
        timing: None,
    },
];

/// The story's state between trials (`crash_promote`'s too).
pub(crate) struct Story {
    pub(crate) sks: Safekeepers,
    /// The running compute (a primary), started with the failpoints of the
    /// next trial when that one is a move (they are read at launch).
    pub(crate) running: Compute,
    pub(crate) acked: BTreeSet<i32>,
    pub(crate) next_id: i32,
    /// What calibrates the windows: `/metrics.json` of the last clean start
    /// here, the calibration promote's answer in `crash_promote`.
    pub(crate) timings: Value,
    pub(crate) rng: rand::rngs::SmallRng,
}

impl Story {
    /// Writes [`ROWS_PER_TRIAL`] rows on the running compute, each acknowledged.
    pub(crate) async fn write(&mut self) {
        write_acknowledged(&self.running, &mut self.next_id, &mut self.acked).await;
    }

    /// A trial's row: where the kill was drawn (`delay` of `window`) and
    /// landed, the acknowledged rows and the `lost` ones, then `extra`.
    pub(crate) fn row(
        &self,
        (delay, window, landed): (Duration, Duration, &str),
        lost: &[i32],
        extra: Value,
    ) -> Value {
        let mut row = json!({
            "delay_us": delay.as_micros() as u64,
            "window_us": window.as_micros() as u64,
            "landed": landed,
            "acknowledged": self.acked.len(),
            "lost_data": lost.len(),
            "lost_ids": lost.iter().take(20).collect::<Vec<_>>(),
        });
        if let Value::Object(m) = extra {
            row.as_object_mut().expect("a row is an object").extend(m);
        }
        row
    }

    /// A seeded random point of `phase`'s window (`fixed` when `timings`
    /// has none for it), and the window.
    pub(crate) fn delay(&mut self, phase: Phase, fixed: Duration) -> (Duration, Duration) {
        delay_in(&mut self.rng, &self.timings, phase, fixed)
    }
}

/// Writes [`ROWS_PER_TRIAL`] rows on `c` (every safekeeper up), ids from
/// `next_id` on, each one acknowledged and recorded in `acked`.
async fn write_acknowledged(c: &Compute, next_id: &mut i32, acked: &mut BTreeSet<i32>) {
    let client = c.sql("postgres", "writer").await;
    for _ in 0..ROWS_PER_TRIAL {
        let id = *next_id;
        *next_id += 1;
        assert!(
            insert(&client, id).await,
            "insert {id} with every safekeeper up"
        );
        acked.insert(id);
    }
}

/// A seeded random point of `phase`'s window, and the window: its timing
/// field in `timings` (a calibration run's), else `fixed`; at least
/// [`MIN_WINDOW`].
fn delay_in(
    rng: &mut rand::rngs::SmallRng,
    timings: &Value,
    phase: Phase,
    fixed: Duration,
) -> (Duration, Duration) {
    let window = match phase.timing {
        Some(k) => Duration::from_millis(timings[k].as_u64().unwrap_or(0)),
        None => fixed,
    }
    .max(MIN_WINDOW);
    (window.mul_f64(rng.random_range(0.0..1.0)), window)
}

/// Starts a compute with the story's spec, stopping at `failpoints` when given.
fn launch(sks: &Safekeepers, op: &str, failpoints: Option<Phase>) -> Compute {
    launch_with(spec(sks, op), failpoints)
}

/// Starts a compute with `spec`, stopping at the entry of the phase
/// `failpoints` and at its end when given.
pub(crate) fn launch_with(spec: Value, failpoints: Option<Phase>) -> Compute {
    let mut opts = ComputeOpts::with_spec(spec);
    if let Some(p) = failpoints {
        opts.env
            .push((failpoint::VAR.into(), format!("{},{}", p.name, p.end)));
    }
    Compute::start(opts)
}

/// Lets compute_ctl go on from the phase's entry and kills the node
/// `delay` in; says where the kill landed.
pub(crate) async fn kill_in_phase(c: &Compute, delay: Duration) -> &'static str {
    c.signal(Signal::SIGCONT);
    // Fault timing, not synchronisation: the point to hit is random.
    tokio::time::sleep(delay).await;
    let at_end = stopped(c);
    kill_everything(c);
    c.wait_exit(Duration::from_secs(30)).await;
    if at_end {
        "at the phase's end"
    } else {
        "inside the phase"
    }
}

/// One trial of `phase`; `next` is the phase of the trial after it (the
/// recovered compute is launched with its failpoints when it is a move).
async fn trial(story: &mut Story, phase: Phase, n: usize, next: Option<Phase>) -> Value {
    story.write().await;
    let (delay, window) = story.delay(phase, MOVE_WINDOW);
    let (landed, during) = if phase.is_move() {
        // A clone of member 1 replaces member 2; the client writes on.
        let spare = TestPostgres::standby_of(&story.sks.members[1]).await;
        let mut moved = spec(&story.sks, &format!("move-{n}"));
        moved["safekeeper_connstrings"][2] = format!("127.0.0.1:{}", spare.port).into();
        moved["skip_pg_catalog_updates"] = true.into();
        let writer = story.running.sql("postgres", "writer").await;
        let stop = Arc::new(AtomicBool::new(false));
        let first = story.next_id;
        let writing = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut ok = BTreeSet::new();
                let mut id = first;
                while !stop.load(Ordering::Relaxed) && id < first + 100_000 {
                    // The node's death ends the session: its error ends the loop.
                    if !insert(&writer, id).await {
                        break;
                    }
                    ok.insert(id);
                    id += 1;
                }
                ok
            }
        });
        story.running.send_configure_into_fault(&moved);
        wait_stopped(&story.running, phase.name).await;
        let landed = kill_in_phase(&story.running, delay).await;
        stop.store(true, Ordering::Relaxed);
        let during = writing.await.unwrap();
        story.next_id = first + 100_000;
        story.acked.extend(during.iter().copied());
        drop(spare);
        (landed, during.len())
    } else {
        kill_everything(&story.running);
        story.running.wait_exit(Duration::from_secs(30)).await;
        let dying = launch(&story.sks, &format!("dies-{n}"), Some(phase));
        wait_stopped(&dying, phase.name).await;
        (kill_in_phase(&dying, delay).await, 0)
    };

    // The control plane starts a compute elsewhere with the set it knows.
    let t0 = Instant::now();
    let recovered = launch(
        &story.sks,
        &format!("recovered-{n}"),
        next.filter(|p| p.is_move()),
    );
    recovered.wait_status("running", WITHIN).await;
    let converge_ms = t0.elapsed().as_millis() as u64;
    let got = present(&recovered).await;
    let lost: Vec<i32> = story.acked.difference(&got).copied().collect();
    let st = wait_all_streaming(&recovered).await;
    story.timings = recovered.get("/metrics.json").await.json();
    story.running = recovered;
    story.row(
        (delay, window, landed),
        &lost,
        json!({
            "acknowledged_during_move": during,
            "converged": st["quorum"]["holds"] == true,
            "converge_ms": converge_ms,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_node_dies_in_any_phase_of_a_durable_start_or_move()
{
    crate::need_postgres!();
    let seed = chaos::seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let plan: Vec<Phase> = if chaos::full() {
        let mut all = Vec::new();
        for _ in 0..20 {
            all.extend(START_PHASES);
            all.extend(MOVE_PHASES);
        }
        all
    } else {
        vec![
            START_PHASES[rng.random_range(0..START_PHASES.len())],
            MOVE_PHASES[rng.random_range(0..MOVE_PHASES.len())],
        ]
    };
    eprintln!(
        "durable crash cells {:?}: seed {seed} (COMPUTE_CTL_CHAOS_SEED={seed} replays them)",
        plan.iter().map(|p| p.name).collect::<Vec<_>>()
    );
    let sks = Safekeepers::start().await;
    let running = launch(&sks, "first", plan.first().filter(|p| p.is_move()).copied());
    running.wait_status("running", WITHIN).await;
    let metrics = running.get("/metrics.json").await.json();
    let mut story = Story {
        sks,
        running,
        acked: BTreeSet::new(),
        next_id: 0,
        timings: metrics,
        rng,
    };
    for (n, phase) in plan.iter().enumerate() {
        let identity = json!({"phase": phase.name, "trial": n, "seed": seed});
        let next = plan.get(n + 1).copied();
        let row = chaos::trial("crash_durable", identity, async {
            Some(trial(&mut story, *phase, n, next).await)
        })
        .await;
        assert!(row.is_some());
    }
    let r = story.running.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
