//! The supervision logic as a pure state machine: it knows the services'
//! worker counts and which worker runs in which pid, and answers "what now?"
//! for a given instant. The I/O loop (manager.rs) does what it says.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::limiter::{Delay, ForkLimiter};
use crate::{ServiceId, WorkerId};

/// What the loop must do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send SIGTERM to these workers: their id is above the new count.
    Stop(Vec<i32>),
    /// Fork this worker now.
    Fork {
        service: ServiceId,
        worker: WorkerId,
    },
    /// Nothing before `until` (a fork is due then). `too_fast` is set the
    /// first time the limiter imposes its long wait, to log it once.
    Wait { until: Instant, too_fast: bool },
    /// Every worker is there: wait for events only.
    Idle,
}

#[derive(Debug)]
struct Planned {
    id: ServiceId,
    workers: i64,
    /// Ids below `workers` with no running instance, lowest first.
    missing: BTreeSet<WorkerId>,
}

impl Planned {
    fn count(&self) -> usize {
        self.workers.max(0) as usize
    }
}

/// A running worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Running {
    pub service: ServiceId,
    pub worker: WorkerId,
    /// SIGTERM already sent because its id went above the count.
    pub stopping: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    services: Vec<Planned>,
    running: HashMap<i32, Running>,
    /// Instances per (service, worker id): usually 1, briefly 2 when a
    /// stopping worker's id is wanted again.
    instances: HashMap<(ServiceId, WorkerId), u32>,
    limiter: ForkLimiter,
    next_fork_at: Option<Instant>,
    /// When the last fork happened (kept across limiter resets: the
    /// spacing of forks is not the limiter's history).
    last_fork: Option<Instant>,
    counts_changed: bool,
}

impl Supervisor {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a service (or updates its count) with `workers` wanted.
    pub(crate) fn set_workers(&mut self, id: ServiceId, workers: i64) {
        let idx = match self.services.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                self.services.push(Planned {
                    id,
                    workers: 0,
                    missing: BTreeSet::new(),
                });
                self.services.len() - 1
            }
        };
        let plan = &mut self.services[idx];
        plan.workers = workers;
        let count = plan.count();
        let instances = &self.instances;
        plan.missing = (0..count)
            .filter(|w| !instances.contains_key(&(id, *w)))
            .collect();
        self.counts_changed = true;
    }

    /// Forgets the fork history (SIGHUP, reconfigure).
    pub(crate) fn reset_limiter(&mut self) {
        self.limiter.reset();
        self.next_fork_at = None;
    }

    fn expected(&self) -> usize {
        self.services.iter().map(Planned::count).sum()
    }

    /// What to do at `now`.
    pub(crate) fn next_step(&mut self, now: Instant, wait_interval: Duration) -> Step {
        if self.counts_changed {
            self.counts_changed = false;
            let counts: HashMap<ServiceId, usize> =
                self.services.iter().map(|s| (s.id, s.count())).collect();
            let mut stop: Vec<i32> = Vec::new();
            for (pid, w) in self.running.iter_mut() {
                if !w.stopping && w.worker >= counts.get(&w.service).copied().unwrap_or(0) {
                    w.stopping = true;
                    stop.push(*pid);
                }
            }
            if !stop.is_empty() {
                stop.sort_unstable();
                return Step::Stop(stop);
            }
        }
        let Some((service, worker)) = self
            .services
            .iter()
            .find_map(|s| s.missing.first().map(|w| (s.id, *w)))
        else {
            self.next_fork_at = None;
            return Step::Idle;
        };
        match self.next_fork_at {
            Some(at) if now >= at => Step::Fork { service, worker },
            Some(until) => Step::Wait {
                until,
                too_fast: false,
            },
            None => {
                let delay = self.limiter.plan(now, self.expected(), wait_interval);
                let until = match delay {
                    // `wait_interval` is the time between two forks: a fork
                    // long after the previous one (a lone respawn) goes at
                    // once, a batch is spread out.
                    Delay::Interval(d) => match self.last_fork {
                        Some(last) => (last + d).max(now),
                        None => now,
                    },
                    other => now + other.duration(),
                };
                self.next_fork_at = Some(until);
                if delay == Delay::TooFast {
                    Step::Wait {
                        until,
                        too_fast: true,
                    }
                } else if until <= now {
                    Step::Fork { service, worker }
                } else {
                    Step::Wait {
                        until,
                        too_fast: false,
                    }
                }
            }
        }
    }

    /// A fork was attempted at `at` (successful or not: failures count
    /// against the rate too).
    pub(crate) fn fork_attempted(&mut self, at: Instant) {
        self.limiter.record(at);
        self.last_fork = Some(at);
        self.next_fork_at = None;
    }

    /// The worker `worker` of `service` now runs as `pid`.
    pub(crate) fn forked(&mut self, service: ServiceId, worker: WorkerId, pid: i32) {
        self.running.insert(
            pid,
            Running {
                service,
                worker,
                stopping: false,
            },
        );
        *self.instances.entry((service, worker)).or_insert(0) += 1;
        if let Some(s) = self.services.iter_mut().find(|s| s.id == service) {
            s.missing.remove(&worker);
        }
    }

    /// `pid` is gone: returns which worker it was, if it was ours.
    pub(crate) fn exited(&mut self, pid: i32) -> Option<Running> {
        let w = self.running.remove(&pid)?;
        let key = (w.service, w.worker);
        let left = match self.instances.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                *n
            }
            _ => {
                self.instances.remove(&key);
                0
            }
        };
        if left == 0 {
            if let Some(s) = self.services.iter_mut().find(|s| s.id == w.service) {
                if w.worker < s.count() {
                    s.missing.insert(w.worker);
                }
            }
        }
        Some(w)
    }

    /// Every running worker's pid.
    pub(crate) fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.running.keys().copied()
    }

    /// Whether `pid` is one of our running workers.
    pub(crate) fn contains(&self, pid: i32) -> bool {
        self.running.contains_key(&pid)
    }

    /// How many workers run.
    pub(crate) fn running_count(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(10);
    const A: ServiceId = ServiceId(1);
    const B: ServiceId = ServiceId(2);

    /// Runs the machine from `now`, forking whatever it asks with fake pids,
    /// jumping the fake clock over waits, until it is idle.
    fn settle(
        s: &mut Supervisor,
        now: &mut Instant,
        next_pid: &mut i32,
    ) -> Vec<(ServiceId, WorkerId)> {
        let mut forks = Vec::new();
        for _ in 0..10_000 {
            match s.next_step(*now, WAIT) {
                Step::Fork { service, worker } => {
                    s.fork_attempted(*now);
                    s.forked(service, worker, *next_pid);
                    *next_pid += 1;
                    forks.push((service, worker));
                }
                Step::Wait { until, .. } => *now = until,
                Step::Stop(_) => {}
                Step::Idle => return forks,
            }
        }
        panic!("never idle");
    }

    #[test]
    fn starts_services_in_order_with_ids_from_zero() {
        let mut s = Supervisor::new();
        s.set_workers(A, 2);
        s.set_workers(B, 1);
        let (mut now, mut pid) = (Instant::now(), 100);
        let forks = settle(&mut s, &mut now, &mut pid);
        assert_eq!(forks, vec![(A, 0), (A, 1), (B, 0)]);
        assert_eq!(s.running_count(), 3);
    }

    #[test]
    fn forks_are_spaced_by_the_interval_and_a_lone_one_goes_at_once() {
        let mut s = Supervisor::new();
        s.set_workers(A, 2);
        let now = Instant::now();
        assert_eq!(
            s.next_step(now, WAIT),
            Step::Fork {
                service: A,
                worker: 0
            }
        );
        s.fork_attempted(now);
        s.forked(A, 0, 100);
        assert_eq!(
            s.next_step(now, WAIT),
            Step::Wait {
                until: now + WAIT,
                too_fast: false
            }
        );
        assert_eq!(
            s.next_step(now + WAIT, WAIT),
            Step::Fork {
                service: A,
                worker: 1
            }
        );
        s.fork_attempted(now + WAIT);
        s.forked(A, 1, 101);
        // Much later, worker 1 dies: its replacement is forked at once.
        let later = now + Duration::from_secs(30);
        s.exited(101);
        assert_eq!(
            s.next_step(later, WAIT),
            Step::Fork {
                service: A,
                worker: 1
            }
        );
    }

    #[test]
    fn zero_interval_forks_at_once() {
        let mut s = Supervisor::new();
        s.set_workers(A, 1);
        let now = Instant::now();
        assert_eq!(
            s.next_step(now, Duration::ZERO),
            Step::Fork {
                service: A,
                worker: 0
            }
        );
    }

    #[test]
    fn a_dead_worker_is_replaced_with_its_own_id() {
        let mut s = Supervisor::new();
        s.set_workers(A, 3);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        let gone = s.exited(101).expect("pid 101 is worker 1");
        assert_eq!((gone.service, gone.worker), (A, 1));
        assert_eq!(s.exited(999), None, "not ours");
        now += Duration::from_secs(10);
        assert_eq!(settle(&mut s, &mut now, &mut pid), vec![(A, 1)]);
    }

    #[test]
    fn reconfigure_down_stops_the_highest_ids_once() {
        let mut s = Supervisor::new();
        s.set_workers(A, 4);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        s.set_workers(A, 2);
        assert_eq!(s.next_step(now, WAIT), Step::Stop(vec![102, 103]));
        assert_eq!(s.next_step(now, WAIT), Step::Idle, "stopped only once");
        // They exit: not respawned.
        s.exited(102);
        s.exited(103);
        assert_eq!(s.next_step(now, WAIT), Step::Idle);
        assert_eq!(s.running_count(), 2);
    }

    #[test]
    fn reconfigure_to_zero_or_below_stops_everything() {
        let mut s = Supervisor::new();
        s.set_workers(A, 2);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        s.set_workers(A, -1);
        assert_eq!(s.next_step(now, WAIT), Step::Stop(vec![100, 101]));
    }

    #[test]
    fn reconfigure_up_starts_the_missing_ids() {
        let mut s = Supervisor::new();
        s.set_workers(A, 1);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        s.set_workers(A, 3);
        assert_eq!(settle(&mut s, &mut now, &mut pid), vec![(A, 1), (A, 2)]);
    }

    #[test]
    fn an_id_still_stopping_is_started_again_only_once_it_is_gone() {
        let mut s = Supervisor::new();
        s.set_workers(A, 2);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        s.set_workers(A, 1);
        assert_eq!(s.next_step(now, WAIT), Step::Stop(vec![101]));
        s.set_workers(A, 2);
        assert_eq!(
            settle(&mut s, &mut now, &mut pid),
            vec![],
            "101 still holds id 1"
        );
        s.exited(101);
        assert_eq!(settle(&mut s, &mut now, &mut pid), vec![(A, 1)]);
    }

    #[test]
    fn a_crash_loop_hits_the_limiter_and_says_so_once() {
        let mut s = Supervisor::new();
        s.set_workers(A, 1);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        let mut too_fast = 0;
        let mut forks = 0;
        let start = now;
        while now < start + Duration::from_secs(30) {
            // The worker dies at once.
            s.exited(pid - 1);
            loop {
                match s.next_step(now, WAIT) {
                    Step::Fork { service, worker } => {
                        s.fork_attempted(now);
                        s.forked(service, worker, pid);
                        pid += 1;
                        forks += 1;
                        break;
                    }
                    Step::Wait { until, too_fast: t } => {
                        too_fast += t as u32;
                        now = until;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        // Two forks per 5 s at most (see limiter.rs), each long wait
        // announced once.
        assert!(forks <= 14, "{forks} forks in 30 s");
        assert!(too_fast >= 5, "{too_fast} too-fast waits announced");
        assert!(
            too_fast as usize * 2 >= forks - 2,
            "{too_fast} waits for {forks} forks"
        );
    }

    #[test]
    fn reset_limiter_cancels_the_long_wait() {
        let mut s = Supervisor::new();
        s.set_workers(A, 1);
        let (mut now, mut pid) = (Instant::now(), 100);
        settle(&mut s, &mut now, &mut pid);
        s.exited(100);
        settle(&mut s, &mut now, &mut pid);
        s.exited(101);
        let Step::Wait {
            until,
            too_fast: true,
        } = s.next_step(now, WAIT)
        else {
            panic!("expected the long wait");
        };
        assert!(until >= now + Duration::from_secs(5));
        s.reset_limiter();
        assert_eq!(
            s.next_step(now, WAIT),
            Step::Wait {
                until: now + WAIT,
                too_fast: false
            }
        );
    }
}
