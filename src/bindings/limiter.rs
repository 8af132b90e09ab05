//! The fork-rate limiter, as a pure function of the fork times and a clock
//! the caller passes in (so it is unit-tested with a fake one).
//!
//! Rule (the contract's): with E = the number of workers all services
//! expect, if more than E forks happened and the oldest of the last E+1 is
//! less than E seconds old, the next fork waits [`TOO_FAST_DELAY`];
//! otherwise it is spaced from the previous fork by the manager's
//! `wait_interval`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the next fork waits once forking is too fast.
pub const TOO_FAST_DELAY: Duration = Duration::from_secs(5);

/// How long the next fork must wait, decided by [`ForkLimiter::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    /// The usual spacing between forks (`wait_interval`), counted from the
    /// previous fork.
    Interval(Duration),
    /// No pause: forks were spread out enough.
    None,
    /// Forking too fast: wait [`TOO_FAST_DELAY`] (and say so).
    TooFast,
}

impl Delay {
    /// The time to wait.
    pub fn duration(self) -> Duration {
        match self {
            Delay::Interval(d) => d,
            Delay::None => Duration::ZERO,
            Delay::TooFast => TOO_FAST_DELAY,
        }
    }
}

/// Remembers recent fork times.
#[derive(Debug, Default)]
pub struct ForkLimiter {
    times: VecDeque<Instant>,
}

impl ForkLimiter {
    /// A limiter with no fork in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides the wait before the next fork, at `now`, when `expected`
    /// workers are configured in all.
    pub fn plan(&mut self, now: Instant, expected: usize, wait_interval: Duration) -> Delay {
        if self.times.len() > expected {
            let oldest = self.times.pop_front().expect("len > expected >= 0");
            if now.saturating_duration_since(oldest) < Duration::from_secs(expected as u64) {
                Delay::TooFast
            } else {
                Delay::None
            }
        } else {
            Delay::Interval(wait_interval)
        }
    }

    /// Records a fork made at `at`.
    pub fn record(&mut self, at: Instant) {
        self.times.push_back(at);
    }

    /// Forgets every fork (after a reload or a reconfigure, so that the
    /// workers they restart come back quickly).
    pub fn reset(&mut self) {
        self.times.clear();
    }

    /// How many fork times are remembered.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether no fork time is remembered.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(10);

    #[test]
    fn first_forks_wait_the_interval() {
        let t0 = Instant::now();
        let mut l = ForkLimiter::new();
        for i in 0..=2 {
            assert_eq!(l.plan(t0, 2, WAIT), Delay::Interval(WAIT), "fork {i}");
            l.record(t0);
        }
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn more_than_expected_forks_within_expected_seconds_is_too_fast() {
        let t0 = Instant::now();
        let mut l = ForkLimiter::new();
        for _ in 0..3 {
            l.plan(t0, 2, WAIT);
            l.record(t0);
        }
        // 3 forks > 2 expected, the oldest 1 s old < 2 s: too fast.
        let now = t0 + Duration::from_secs(1);
        let d = l.plan(now, 2, WAIT);
        assert_eq!(d, Delay::TooFast);
        assert_eq!(d.duration(), Duration::from_secs(5));
        assert_eq!(l.len(), 2, "the oldest is dropped");
    }

    #[test]
    fn spread_out_forks_are_not_delayed() {
        let t0 = Instant::now();
        let mut l = ForkLimiter::new();
        for _ in 0..3 {
            l.plan(t0, 2, WAIT);
            l.record(t0);
        }
        let now = t0 + Duration::from_secs(2);
        assert_eq!(l.plan(now, 2, WAIT), Delay::None);
    }

    #[test]
    fn a_crash_loop_settles_at_one_fork_per_delay() {
        // One expected worker dying at once: once 2 forks happened within
        // 1 s, the next waits 5 s; the one after that finds the oldest
        // fork old enough and goes at once. So 2 forks per 5 s.
        let t0 = Instant::now();
        let mut l = ForkLimiter::new();
        let mut now = t0;
        let mut forks = 0;
        while now < t0 + Duration::from_secs(60) {
            now += l.plan(now, 1, WAIT).duration();
            l.record(now);
            forks += 1;
        }
        assert!((22..=26).contains(&forks), "{forks} forks in 60 s");
    }

    #[test]
    fn reset_forgets_everything() {
        let t0 = Instant::now();
        let mut l = ForkLimiter::new();
        for _ in 0..5 {
            l.record(t0);
        }
        l.reset();
        assert!(l.is_empty());
        assert_eq!(l.plan(t0, 1, WAIT), Delay::Interval(WAIT));
    }
}
