//! Summary statistics and the result record of one benchmark case.

use serde::Serialize;

/// Milliseconds, median, min and p90 over repetitions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median_ms: f64,
    pub min_ms: f64,
    /// Nearest rank, as [`percentile`].
    pub p90_ms: f64,
    pub reps: usize,
}

impl Summary {
    pub fn of(samples_ms: &[f64]) -> Self {
        let mut v = samples_ms.to_vec();
        v.sort_by(f64::total_cmp);
        let median_ms = if v.is_empty() {
            f64::NAN
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Self {
            median_ms,
            min_ms: v.first().copied().unwrap_or(f64::NAN),
            p90_ms: percentile(&v, 90.0),
            reps: v.len(),
        }
    }
}

/// The p-th percentile (0..=100) of samples, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// One row of the results: ours vs the floor measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub suite: &'static str,
    pub case: String,
    pub ours: Summary,
    pub floor: Option<Summary>,
    /// ours.median / floor.median.
    pub ratio: Option<f64>,
    /// The target ratio (or bound) this case is held to, as text.
    pub target: &'static str,
    pub met: Option<bool>,
    /// Anything else worth keeping (statement counts, percentiles, ...).
    pub extra: serde_json::Value,
}

impl CaseResult {
    pub fn new(
        suite: &'static str,
        case: impl Into<String>,
        ours: Summary,
        floor: Option<Summary>,
    ) -> Self {
        let ratio = floor.map(|f| ours.median_ms / f.median_ms);
        Self {
            suite,
            case: case.into(),
            ours,
            floor,
            ratio,
            target: "",
            met: None,
            extra: serde_json::Value::Null,
        }
    }

    /// Holds the ratio to `max` (e.g. 1.5 for "≤ 1.5× floor").
    pub fn ratio_target(mut self, text: &'static str, max: f64) -> Self {
        self.target = text;
        self.met = self.ratio.map(|r| r <= max);
        self
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = extra;
        self
    }
}
