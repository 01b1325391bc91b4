//! A campaign: many seeds, optionally split over worker processes, with
//! progress, a summary table and a replay command per failing seed.
//!
//! The result of a campaign depends only on its seeds: every seed is run
//! the same way whichever process runs it, and the records are reported in
//! seed order, so `--jobs N` gives the same verdicts, failing seeds, table
//! and trace for any N. Workers are this binary again (`--worker`), each
//! given a contiguous range of the seeds, writing one JSON record per seed
//! on stdout.
// Progress is about real time (seeds per second, ETA): the harness's own
// clock, never the simulation's.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runner::SeedReport;

/// What a campaign keeps of one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRecord {
    pub seed: u64,
    pub scenario: String,
    pub violations: Vec<String>,
    /// The fault schedule, as JSON (what `--faults` takes).
    pub schedule: String,
    /// Faults of the schedule that started during the run.
    pub faults_fired: u64,
    pub simulated_us: u64,
    /// The slowest answered skip-flag notify, client side, simulated µs.
    pub slowest_notify_us: Option<u64>,
    pub replay: String,
    /// `--shrink`: the replay command with the minimal fault schedule.
    pub shrunk: Option<String>,
}

impl SeedRecord {
    pub fn of(report: &SeedReport, replay: String, shrunk: Option<String>) -> Self {
        Self {
            seed: report.seed,
            scenario: report.scenario.to_string(),
            violations: report.violations.clone(),
            schedule: report.schedule.describe(),
            faults_fired: report.faults_fired,
            simulated_us: u64::try_from(report.simulated.as_micros()).unwrap_or(u64::MAX),
            slowest_notify_us: report.slowest_notify_us,
            replay,
            shrunk,
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The line printed for a failing seed.
    pub fn failure_line(&self) -> String {
        let mut s = format!(
            "FAIL seed {} scenario {}: {} | faults {} | replay: {}",
            self.seed,
            self.scenario,
            self.violations.first().map(String::as_str).unwrap_or(""),
            self.schedule,
            self.replay
        );
        if let Some(shrunk) = &self.shrunk {
            s.push_str(&format!("\n  shrunk: {shrunk}"));
        }
        s
    }
}

/// The contiguous seed ranges of `jobs` workers over `first..first + count`.
pub fn split(first: u64, count: u64, jobs: u64) -> Vec<(u64, u64)> {
    let jobs = jobs.clamp(1, count.max(1));
    (0..jobs)
        .map(|k| {
            let lo = count * k / jobs;
            let hi = count * (k + 1) / jobs;
            (first + lo, hi - lo)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Per-scenario totals for the summary table.
#[derive(Debug, Default, Clone, PartialEq)]
struct Row {
    seeds: u64,
    failed: u64,
    faults_fired: u64,
    simulated_us: u64,
    slowest_notify_us: Option<u64>,
}

impl Row {
    fn add(&mut self, r: &SeedRecord) {
        self.seeds += 1;
        self.failed += u64::from(!r.passed());
        self.faults_fired += r.faults_fired;
        self.simulated_us += r.simulated_us;
        self.slowest_notify_us = self.slowest_notify_us.max(r.slowest_notify_us);
    }
}

/// The summary table: seeds, failures, faults fired and the slowest
/// simulated notify per scenario, then the total.
pub fn summary_table<'a>(records: impl IntoIterator<Item = &'a SeedRecord>) -> String {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut total = Row::default();
    for r in records {
        rows.entry(r.scenario.as_str()).or_default().add(r);
        total.add(r);
    }
    let ms = |us: Option<u64>| us.map_or("-".to_string(), |u| format!("{:.1}", u as f64 / 1000.0));
    let mut out = format!(
        "{:<32} {:>7} {:>7} {:>13} {:>14} {:>22}\n",
        "scenario", "seeds", "failed", "faults fired", "simulated s", "slowest notify (ms)"
    );
    for (name, row) in rows.iter().map(|(n, r)| (*n, r)).chain([("total", &total)]) {
        out.push_str(&format!(
            "{:<32} {:>7} {:>7} {:>13} {:>14.1} {:>22}\n",
            name,
            row.seeds,
            row.failed,
            row.faults_fired,
            row.simulated_us as f64 / 1e6,
            ms(row.slowest_notify_us)
        ));
    }
    out
}

/// Progress on stderr: a bar with seeds/s and ETA on a terminal, a plain
/// line every few seconds otherwise (and nothing for a short campaign).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    failed: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

/// How often the plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(total: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} seeds  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let now = std::time::Instant::now();
        Self {
            bar,
            total,
            done: 0,
            failed: 0,
            started: now,
            last_line: now,
        }
    }

    pub fn seed_done(&mut self, passed: bool) {
        self.done += 1;
        self.failed += u64::from(!passed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !passed {
                bar.set_message(format!("{} failed", self.failed));
            }
            return;
        }
        let now = std::time::Instant::now();
        if now - self.last_line >= LINE_EVERY && self.done < self.total {
            self.last_line = now;
            let rate = self.done as f64 / (now - self.started).as_secs_f64().max(1e-9);
            let eta = (self.total - self.done) as f64 / rate.max(1e-9);
            eprintln!(
                "progress: {}/{} seeds ({:.0}%), {:.0} seeds/s, ETA {:.0} s, {} failed",
                self.done,
                self.total,
                100.0 * self.done as f64 / self.total.max(1) as f64,
                rate,
                eta,
                self.failed
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_seed_once_in_order() {
        for (count, jobs) in [(10, 3), (1, 4), (0, 2), (100_000, 7), (5, 1)] {
            let parts = split(40, count, jobs);
            let seeds: Vec<u64> = parts.iter().flat_map(|(f, n)| *f..*f + *n).collect();
            assert_eq!(
                seeds,
                (40..40 + count).collect::<Vec<_>>(),
                "{count} over {jobs}"
            );
            assert!(parts.len() as u64 <= jobs.max(1));
        }
    }

    fn rec(seed: u64, scenario: &str, ok: bool, notify: Option<u64>) -> SeedRecord {
        SeedRecord {
            seed,
            scenario: scenario.into(),
            violations: if ok { vec![] } else { vec!["boom".into()] },
            schedule: "{}".into(),
            faults_fired: 2,
            simulated_us: 1_500_000,
            slowest_notify_us: notify,
            replay: format!("replay {seed}"),
            shrunk: None,
        }
    }

    #[test]
    fn the_table_sums_per_scenario_and_keeps_the_slowest_notify() {
        let t = summary_table(&[
            rec(1, "b", true, Some(40_000)),
            rec(2, "a", false, None),
            rec(3, "b", true, Some(90_500)),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cells(lines[1]), ["a", "1", "1", "2", "1.5", "-"]);
        assert_eq!(cells(lines[2]), ["b", "2", "0", "4", "3.0", "90.5"]);
        assert_eq!(cells(lines[3]), ["total", "3", "1", "6", "4.5", "90.5"]);
    }
}
