//! The numbers: the rolling average of memory samples, the upscale
//! threshold, when to ask for an upscale and when a downscale is safe.
//! Pure functions of samples and instants, so that they are tested exactly.
//!
//! As Neon's `runner.rs` and `cgroup.rs` (6a35a3e9):
//! - a sample every 100 ms, the average over the last 5;
//! - threshold = (1 - 0.15) x usable; usable = `MemTotal` at start, and
//!   granted (or target) memory minus a 100 MiB system buffer afterwards;
//! - an `UpscaleRequest` when the average reaches the threshold, at most
//!   once a second;
//! - a downscale fails (`InternalError`) when the last sample is older than
//!   5 s, is refused while there is at most one sample or when the new
//!   threshold < average + 100 MiB, and is accepted otherwise.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

pub const MIB: u64 = 1 << 20;
/// How often the cgroup's memory is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many samples the average is over.
pub const WINDOW: usize = 5;
/// What the kernel keeps of the VM's memory before userspace sees it.
pub const SYS_BUFFER: u64 = 100 * MIB;
/// The share of usable memory always left above the threshold.
pub const MIN_OVERHEAD_FRACTION: f64 = 0.15;
/// Room a downscale must leave between the average and the new threshold.
pub const DOWNSCALE_BUFFER: u64 = 100 * MIB;
/// A downscale needs a sample at most this old.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// At most one `UpscaleRequest` per this interval.
pub const UPSCALE_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Whole MiB of `bytes`, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes / MIB
}

/// The upscale threshold for `usable` bytes.
pub fn threshold(usable: u64) -> u64 {
    (usable as f64 * (1.0 - MIN_OVERHEAD_FRACTION)) as u64
}

/// What the agent's memory figure leaves for us.
pub fn usable(agent_mem: u64) -> u64 {
    agent_mem.saturating_sub(SYS_BUFFER)
}

/// The summary of the recent samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// When the last sample was taken (the monitor's start before any).
    pub at: Instant,
    /// The average non-reclaimable usage of the last [`WINDOW`] samples.
    pub avg: u64,
    /// How many samples the average is over (at most [`WINDOW`]).
    pub samples: usize,
}

/// The last [`WINDOW`] samples.
#[derive(Debug, Clone, Default)]
pub struct Window {
    samples: VecDeque<u64>,
}

impl Window {
    /// Adds a sample taken at `at` and summarises the window.
    pub fn push(&mut self, at: Instant, bytes: u64) -> History {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(bytes);
        let n = self.samples.len();
        let sum: u128 = self.samples.iter().map(|&b| u128::from(b)).sum();
        History {
            at,
            avg: u64::try_from(sum / n as u128).unwrap_or(u64::MAX),
            samples: n,
        }
    }
}

/// What to answer a `DownscaleRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downscale {
    /// No recent sample: answer `InternalError` with this text.
    Stale(String),
    /// `Ok: false` with this status.
    Refuse(String),
    /// Safe: adopt `usable` (threshold `threshold`).
    Accept { usable: u64, threshold: u64 },
}

/// Judges a downscale to `target_mem` bytes against the recent samples.
pub fn judge_downscale(target_mem: u64, history: &History, now: Instant) -> Downscale {
    let age = now.saturating_duration_since(history.at);
    if age > STALE_AFTER {
        return Downscale::Stale(format!(
            "no cgroup memory sample for {age:?} (more than {STALE_AFTER:?}): cannot tell whether downscaling is safe; check that the cgroup's memory.stat is readable"
        ));
    }
    if history.samples <= 1 {
        return Downscale::Refuse(format!(
            "not enough cgroup memory samples yet ({} of at least 2)",
            history.samples
        ));
    }
    let usable = usable(target_mem);
    let new = threshold(usable);
    let buffer = if crate::planted::active(crate::planted::Bug::DownscaleWithoutBuffer) {
        0
    } else {
        DOWNSCALE_BUFFER
    };
    if new < history.avg.saturating_add(buffer) {
        return Downscale::Refuse(format!(
            "calculated memory threshold too low: {} MiB (new threshold) < {} MiB (current usage) + {} MiB (downscale buffer)",
            mib(new),
            mib(history.avg),
            mib(DOWNSCALE_BUFFER)
        ));
    }
    Downscale::Accept {
        usable,
        threshold: new,
    }
}

/// Whether a sample summary calls for an `UpscaleRequest` now.
pub fn wants_upscale(
    history: &History,
    threshold: u64,
    last_request: Option<Instant>,
    now: Instant,
) -> bool {
    history.samples > 0
        && history.avg >= threshold
        && last_request.is_none_or(|t| now.saturating_duration_since(t) >= UPSCALE_REQUEST_INTERVAL)
}

#[cfg(test)]
// Any instant will do as the origin: the rules only compare instants.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn hist(at: Instant, avg: u64, samples: usize) -> History {
        History { at, avg, samples }
    }

    #[test]
    fn threshold_leaves_fifteen_percent() {
        assert_eq!(threshold(1000), 850);
        assert_eq!(threshold(4 * GIB), 3_650_722_201);
        // 4 GiB granted: 4096 - 100 MiB usable, threshold 85% of that.
        assert_eq!(mib(threshold(usable(4 * GIB))), 3396);
        assert_eq!(usable(50 * MIB), 0);
    }

    #[test]
    fn average_is_over_the_last_five_samples() {
        let t = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.push(t, 10), hist(t, 10, 1));
        assert_eq!(w.push(t, 20), hist(t, 15, 2));
        for v in [30, 40, 50] {
            w.push(t, v);
        }
        assert_eq!(w.push(t, 60), hist(t, 40, 5)); // 20..=60
        assert_eq!(w.push(t, 1000).avg, (30 + 40 + 50 + 60 + 1000) / 5);
        let mut w = Window::default();
        w.push(t, u64::MAX);
        assert_eq!(w.push(t, u64::MAX).avg, u64::MAX);
    }

    #[test]
    fn downscale_fails_on_stale_samples_before_anything_else() {
        let t0 = Instant::now();
        let h = hist(t0, 0, 0);
        assert!(matches!(
            judge_downscale(8 * GIB, &h, t0 + Duration::from_millis(5001)),
            Downscale::Stale(_)
        ));
        // Exactly 5 s old is still recent.
        assert!(matches!(
            judge_downscale(8 * GIB, &h, t0 + STALE_AFTER),
            Downscale::Refuse(_)
        ));
    }

    #[test]
    fn downscale_needs_two_samples() {
        let t0 = Instant::now();
        match judge_downscale(8 * GIB, &hist(t0, 0, 1), t0) {
            Downscale::Refuse(s) => assert!(s.contains("not enough"), "{s}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge_downscale(8 * GIB, &hist(t0, 0, 2), t0),
            Downscale::Accept { .. }
        ));
    }

    #[test]
    fn downscale_is_refused_when_the_new_threshold_is_under_usage_plus_buffer() {
        let t0 = Instant::now();
        // 1 GiB target: usable 924 MiB, threshold 785 MiB; usage 1 GiB.
        match judge_downscale(GIB, &hist(t0, GIB, 5), t0) {
            Downscale::Refuse(s) => assert_eq!(
                s,
                "calculated memory threshold too low: 785 MiB (new threshold) < 1024 MiB (current usage) + 100 MiB (downscale buffer)"
            ),
            other => panic!("{other:?}"),
        }
        // The boundary: threshold == usage + buffer is accepted, one byte less is not.
        let target = 2 * GIB;
        let new = threshold(usable(target));
        let at_edge = new - DOWNSCALE_BUFFER;
        assert_eq!(
            judge_downscale(target, &hist(t0, at_edge, 5), t0),
            Downscale::Accept {
                usable: usable(target),
                threshold: new
            }
        );
        assert!(matches!(
            judge_downscale(target, &hist(t0, at_edge + 1, 5), t0),
            Downscale::Refuse(_)
        ));
    }

    #[test]
    fn upscale_is_requested_at_the_threshold_at_most_once_a_second() {
        let t0 = Instant::now();
        let h = hist(t0, 850, 5);
        assert!(wants_upscale(&h, 850, None, t0));
        assert!(!wants_upscale(&hist(t0, 849, 5), 850, None, t0));
        assert!(!wants_upscale(&hist(t0, 900, 0), 850, None, t0));
        let later = |ms| t0 + Duration::from_millis(ms);
        assert!(!wants_upscale(&h, 850, Some(t0), later(999)));
        assert!(wants_upscale(&h, 850, Some(t0), later(1000)));
    }
}
