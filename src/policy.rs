//! Restart policies, per service: whether a worker that ended is started
//! again, how long its respawn waits (exponential backoff), when the
//! manager gives up, and whether the manager stops once the service has
//! no worker left.
//!
//! Opt-in: a service added with [`ServiceManager::add`](crate::ServiceManager::add)
//! has [`ServicePolicy::default()`], the contract's behaviour (every worker
//! respawned, the fork-rate limiter shared by every service). Give a policy
//! with [`ServiceManager::add_with_policy`](crate::ServiceManager::add_with_policy).
//!
//! **What counts.** Exits the engine caused, or that the worker announced
//! as a restart, are restarts whatever the policy says: a worker the master
//! sent SIGTERM (a scale-down, a `restart` command, a stop), and a worker
//! whose `reload()` restarted it ([`restart_worker`](crate::restart_worker),
//! the default `reload()` of every face, announces it to the master before
//! the worker sends itself SIGTERM). Such a worker is respawned at once. Only
//! the other exits count for the policy, the backoff and the give-up; of
//! those, a *failure* is an exit with a nonzero status, by a signal, or
//! whose status another waiter took.
//!
//! ```
//! use std::time::Duration;
//! use cotyledon::{Backoff, GiveUp, Restart, ServicePolicy};
//!
//! let policy = ServicePolicy::default()
//!     .restart(Restart::OnFailure)
//!     .backoff(Backoff::new(Duration::from_millis(500), Duration::from_secs(30)))
//!     .give_up(GiveUp::new(5, Duration::from_secs(60)));
//! assert!(policy.check().is_ok());
//! assert!(!policy.stop_on_exit);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::Error;

/// The exit status the manager gives back when a service gives up (see
/// [`GiveUp`]): `run()` returns [`Error::Stopped`] with it, the C face
/// `COTYLEDON_RESULT_STOPPED` with it, the Python face raises
/// `SystemExit(125)`. 125 is s6's "permanent failure" status: a supervisor
/// above the manager (systemd's `RestartPreventExitStatus=125`) can tell
/// it from a crash.
pub const GIVE_UP_STATUS: i32 = 125;

/// When a worker that ended is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always (the contract's behaviour).
    #[default]
    Always,
    /// Only after a failure: a worker that exits with status 0 is not
    /// respawned, and its id shows as finished in the status.
    OnFailure,
    /// Never: every worker id runs once (restarts the engine causes aside).
    Never,
}

impl Restart {
    /// The policy's name: `always`, `on-failure` or `never` (what the
    /// status and the Python face's `restart=` say).
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Restart {
    type Err = Error;

    /// `"always"`, `"on-failure"` or `"never"`, exactly.
    ///
    /// ```
    /// use cotyledon::Restart;
    /// assert_eq!("on-failure".parse::<Restart>().unwrap(), Restart::OnFailure);
    /// assert_eq!(
    ///     "sometimes".parse::<Restart>().unwrap_err().to_string(),
    ///     "invalid restart policy: 'restart' must be \"always\", \"on-failure\" or \"never\", \
    ///      not: \"sometimes\""
    /// );
    /// ```
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "never" => Ok(Restart::Never),
            other => Err(Error::InvalidPolicy(format!(
                "'restart' must be \"always\", \"on-failure\" or \"never\", not: {other:?}"
            ))),
        }
    }
}

/// Exponential backoff of a worker id's respawns.
///
/// After the n-th counted exit in a row of a worker id, its respawn waits
/// `min(max, base × 2^(n-1))`, less a random part of up to `jitter` of it
/// (the wait is drawn uniformly from `[d × (1 - jitter), d]`), so workers
/// that failed together do not come back together. The count goes back to
/// zero when a process of that id ran at least `stable`.
///
/// On a service that has a backoff, it replaces the contract's fork-rate
/// limiter: that service's forks are neither counted by the limiter nor
/// held back by it. A backoff never delays other services, signals or
/// commands.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The part of each wait drawn at random, from 0 to 1 excluded
    /// (default 0.1).
    pub jitter: f64,
    /// How long a process must run for its id's count to go back to zero
    /// (default 10 s).
    pub stable: Duration,
}

impl Backoff {
    /// Waits from `base` to `max`, jitter 0.1, stable after 10 s.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: 0.1,
            stable: Duration::from_secs(10),
        }
    }

    /// Sets the random part of each wait (0 to 1 excluded).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets how long a process must run for the count to reset.
    pub fn stable(mut self, stable: Duration) -> Self {
        self.stable = stable;
        self
    }

    /// The wait after the `streak`-th counted exit in a row (1 for the
    /// first), with `unit` a number drawn from `[0, 1)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cotyledon::Backoff;
    /// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5)).jitter(0.0);
    /// let waits: Vec<u64> = (1..=5).map(|n| b.delay(n, 0.5).as_secs()).collect();
    /// assert_eq!(waits, [1, 2, 4, 5, 5]);
    /// ```
    pub fn delay(&self, streak: u32, unit: f64) -> Duration {
        let doublings = streak.saturating_sub(1);
        let full = if doublings >= 32 {
            self.max
        } else {
            self.base
                .checked_mul(1u32 << doublings)
                .map_or(self.max, |d| d.min(self.max))
        };
        let cut = self.jitter * unit;
        if !cut.is_finite() || cut <= 0.0 {
            return full;
        }
        let cut = Duration::try_from_secs_f64(full.as_secs_f64() * cut.min(1.0)).unwrap_or(full);
        full.saturating_sub(cut)
    }

    fn check(&self) -> Result<(), Error> {
        if self.base.is_zero() {
            return bad("backoff base must be more than 0 s");
        }
        if self.max < self.base {
            return bad(format!(
                "backoff max ({:?}) must be at least its base ({:?})",
                self.max, self.base
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad(format!(
                "backoff jitter must be from 0 to 1 (excluded), not: {}",
                self.jitter
            ));
        }
        Ok(())
    }
}

/// Give up: `failures` failures of the service's workers within `window`
/// stop the manager (gracefully: terminate hooks, SIGTERM to every worker,
/// the graceful timeout as usual), and `run()` gives back
/// [`GIVE_UP_STATUS`]. The log (ERROR), the status and systemd's
/// `STATUS=` say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GiveUp {
    /// How many failures (1 or more).
    pub failures: u32,
    /// Within how long (more than 0 s).
    pub window: Duration,
}

impl GiveUp {
    /// `failures` failures within `window`.
    pub fn new(failures: u32, window: Duration) -> Self {
        GiveUp { failures, window }
    }

    fn check(&self) -> Result<(), Error> {
        if self.failures == 0 {
            return bad("give-up failures must be 1 or more");
        }
        if self.window.is_zero() {
            return bad("give-up window must be more than 0 s");
        }
        Ok(())
    }
}

/// A service's restart policy. The default is the contract's: every
/// worker respawned, the shared fork-rate limiter, no give-up, the manager
/// runs on when a service has no worker left.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ServicePolicy {
    /// When a worker that ended is started again.
    pub restart: Restart,
    /// Stop the manager when the service has no worker left (every id
    /// finished, see [`Restart`]). `run()` then gives back the exit status
    /// of the last of the service's final exits that failed (128 + N for
    /// signal N, 255 for a lost status), or 0 when none did. Scaling the
    /// service to 0 does not stop the manager.
    pub stop_on_exit: bool,
    /// The backoff of respawns; `None`: the contract's fork-rate limiter.
    pub backoff: Option<Backoff>,
    /// When to give up; `None`: never.
    pub give_up: Option<GiveUp>,
}

impl ServicePolicy {
    /// Sets [`restart`](Self::restart).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets [`stop_on_exit`](Self::stop_on_exit).
    pub fn stop_on_exit(mut self, stop: bool) -> Self {
        self.stop_on_exit = stop;
        self
    }

    /// Sets [`backoff`](Self::backoff).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Sets [`give_up`](Self::give_up).
    pub fn give_up(mut self, give_up: GiveUp) -> Self {
        self.give_up = Some(give_up);
        self
    }

    /// Whether the policy is valid; [`Error::InvalidPolicy`] says why not.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cotyledon::{Backoff, ServicePolicy};
    /// let p = ServicePolicy::default().backoff(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)));
    /// assert_eq!(p.check().unwrap_err().to_string(),
    ///            "invalid restart policy: backoff max (1s) must be at least its base (2s)");
    /// ```
    pub fn check(&self) -> Result<(), Error> {
        if let Some(b) = &self.backoff {
            b.check()?;
        }
        if let Some(g) = &self.give_up {
            g.check()?;
        }
        Ok(())
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, Error> {
    Err(Error::InvalidPolicy(why.into()))
}

/// The exit status an exit gives back to whoever stops on it: the code,
/// 128 + N for signal N (as shells report it), 255 for a lost status.
pub(crate) fn status_of(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => crate::LOST_STATUS,
    }
}

/// A small deterministic generator for the jitter (splitmix64): the
/// machine holds one, seeded by the loop, so tests replay the same waits.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The failures of a service within the give-up window.
#[derive(Clone, Debug, Default)]
pub(crate) struct FailureWindow(VecDeque<Instant>);

impl FailureWindow {
    /// Records a failure at `now`; whether `rule` now says give up.
    pub(crate) fn record(&mut self, now: Instant, rule: &GiveUp) -> bool {
        self.0.push_back(now);
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= rule.window)
        {
            self.0.pop_front();
        }
        while self.0.len() > rule.failures as usize {
            self.0.pop_front();
        }
        self.0.len() >= rule.failures as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_from_base_to_max() {
        let b = Backoff::new(Duration::from_millis(100), secs(3)).jitter(0.0);
        let waits: Vec<u128> = (0..=8).map(|n| b.delay(n, 0.9).as_millis()).collect();
        // streak 0 is treated as the first.
        assert_eq!(waits, [100, 100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        // Huge streaks neither overflow nor exceed max.
        assert_eq!(b.delay(40, 0.0), secs(3));
        assert_eq!(b.delay(u32::MAX, 0.0), secs(3));
        let huge = Backoff::new(Duration::MAX / 2, Duration::MAX).jitter(0.0);
        assert_eq!(huge.delay(3, 0.0), Duration::MAX);
    }

    #[test]
    fn jitter_takes_off_up_to_its_part() {
        let b = Backoff::new(secs(10), secs(10)).jitter(0.5);
        assert_eq!(b.delay(1, 0.0), secs(10));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(7500));
        assert_eq!(b.delay(1, 1.0), secs(5));
        assert_eq!(b.delay(1, f64::NAN), secs(10));
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let d = b.delay(1, rng.unit());
            assert!(d > secs(5) && d <= secs(10), "{d:?}");
        }
    }

    #[test]
    fn the_generator_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<f64> = (0..100).map(|_| a.unit()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(Rng::new(1).unit(), Rng::new(2).unit());
    }

    #[test]
    fn give_up_counts_failures_within_the_window() {
        let t0 = Instant::now();
        let rule = GiveUp::new(3, secs(10));
        let mut w = FailureWindow::default();
        assert!(!w.record(t0, &rule));
        assert!(!w.record(t0 + secs(5), &rule));
        // The first is 10 s old: out of the window.
        assert!(!w.record(t0 + secs(10), &rule));
        assert!(w.record(t0 + secs(11), &rule));
        let one = GiveUp::new(1, secs(1));
        assert!(FailureWindow::default().record(t0, &one));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let ok = ServicePolicy::default();
        assert!(ok.check().is_ok());
        let cases = [
            (
                ok.backoff(Backoff::new(Duration::ZERO, secs(1))),
                "backoff base must be more than 0 s",
            ),
            (
                ok.backoff(Backoff::new(secs(1), secs(1)).jitter(1.0)),
                "backoff jitter must be from 0 to 1 (excluded), not: 1",
            ),
            (
                ok.backoff(Backoff::new(secs(1), secs(1)).jitter(f64::NAN)),
                "backoff jitter must be from 0 to 1 (excluded), not: NaN",
            ),
            (
                ok.give_up(GiveUp::new(0, secs(1))),
                "give-up failures must be 1 or more",
            ),
            (
                ok.give_up(GiveUp::new(1, Duration::ZERO)),
                "give-up window must be more than 0 s",
            ),
        ];
        for (policy, why) in cases {
            assert_eq!(
                policy.check().unwrap_err().to_string(),
                format!("invalid restart policy: {why}")
            );
        }
        assert_eq!("never".parse::<Restart>().unwrap(), Restart::Never);
        assert!("Always".parse::<Restart>().is_err());
        assert_eq!(Restart::OnFailure.to_string(), "on-failure");
    }

    #[test]
    fn status_of_an_exit() {
        assert_eq!(status_of(Some(3), None), 3);
        assert_eq!(status_of(None, Some(9)), 137);
        assert_eq!(status_of(None, None), 255);
    }
}
