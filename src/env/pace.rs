//! How far apart the polls of a wait for something that usually comes soon
//! are: a short fixed pause while the wait is young, then a pause that
//! doubles up to a ceiling. Postgres' readiness after its spawn and a quorum
//! of safekeepers after the announce both come within tens of milliseconds
//! in the common case, where a long first pause would be the wait's whole
//! cost, and can take seconds (a long recovery, a safekeeper catching up),
//! where a short pause forever would be a busy loop.

use std::time::Duration;

use tokio::time::Instant;

/// A wait's pacing; [`Pace::next`] gives each pause in turn.
#[derive(Debug, Clone)]
pub struct Pace {
    started: Instant,
    fast_for: Duration,
    slow: Duration,
    pause: Duration,
}

impl Pace {
    /// `fast` apart until `fast_for` after `started`, then doubling up to
    /// `slow`.
    pub fn new(started: Instant, fast: Duration, fast_for: Duration, slow: Duration) -> Self {
        Self {
            started,
            fast_for,
            slow: slow.max(fast),
            pause: fast,
        }
    }

    /// The pause to take at `now` before the next poll.
    pub fn next(&mut self, now: Instant) -> Duration {
        if now.saturating_duration_since(self.started) >= self.fast_for {
            self.pause = (self.pause * 2).min(self.slow);
        }
        self.pause
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the fake clock's origin
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fast_while_young_then_doubling_to_the_ceiling() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 5 * MS, 1000 * MS, 50 * MS);
        assert_eq!(p.next(t0), 5 * MS);
        assert_eq!(p.next(t0 + 999 * MS), 5 * MS);
        let later = t0 + 1000 * MS;
        let pauses: Vec<u64> = (0..5).map(|_| p.next(later).as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 50, 50]);
    }

    #[test]
    fn a_ceiling_below_the_fast_pause_is_the_fast_pause() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 5 * MS, Duration::ZERO, MS);
        assert_eq!(p.next(t0), 5 * MS);
    }
}
