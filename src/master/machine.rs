//! The master as one pure state machine: [`Machine::step`] takes an event
//! and the time, changes the state and says what to do. It knows every
//! rule of the contract (start-up, respawn, the fork-rate limiter, reload,
//! reconfigure, graceful stop and its deadline, SIGINT) and does no I/O:
//! the loop (`run_loop.rs`) feeds it events and performs its actions, and
//! the tests below run it without processes.
//!
//! Forks are only ever started by [`Event::Timer`]: every other event arms
//! the timer (at once when a fork is due), so the loop looks at pending
//! signals between two forks of a batch.
//! The state × event table: docs/master-state-machine.md

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::bindings::limiter::{Delay, ForkLimiter};
use crate::notify::Notice;
use crate::policy::{FailureWindow, Rng, ServicePolicy};
use crate::signals::signal_name;
pub(crate) use crate::signals::Sig;
use crate::status::{Counters, LastExit, ManagerState};
use crate::{ServiceId, WorkerId};

/// How long the master waits for its workers after SIGINT (or the graceful
/// deadline's SIGINT) before it kills what is left: the default of
/// [`Settings::kill_grace`](super::Settings::kill_grace).
pub(crate) const FAST_EXIT_GRACE: Duration = Duration::from_millis(500);

/// How long the master waits for the processes it sent SIGKILL to: one in
/// uninterruptible sleep (a hung NFS read) cannot die at once. Past it, the
/// master exits all the same and says which it left.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// How long past its own graceful timeout the master waits for workers
/// that got SIGTERM: a worker's timeout runs from its SIGTERM, so with equal
/// timeouts the worker's own deadline (its `terminate()` hung: it exits 1)
/// comes first and the master's stop still ends well, as Cotyledon's does.
pub(crate) const WORKER_DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// `STATUS=` goes to systemd at most this often (a change is sent at the
/// next chance after it).
pub(crate) const STATUS_EVERY: Duration = Duration::from_millis(250);

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Someone else took its status.
    Lost,
}

impl Exit {
    /// The status hooks see: the code, minus the signal, or `LOST_STATUS`.
    pub(crate) fn hook_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => -s,
            Exit::Lost => crate::LOST_STATUS,
        }
    }
}

/// Hooks the master runs, whose end is an event of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum HookKind {
    Terminate,
    Reload,
}

/// What handles, the C and Python faces and the control socket ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Set a service's worker count (validated by the caller, e.g. with
    /// [`Machine::check_scale`]).
    Scale { service: ServiceId, workers: i64 },
    /// Forget the fork history.
    ResetLimiter,
    /// As SIGHUP.
    Reload,
    /// Stop one worker gracefully; it is respawned.
    Restart {
        service: ServiceId,
        worker: WorkerId,
    },
    /// As SIGTERM, for the given cause (which the log line tells).
    Stop(StopCause),
    /// The graceful timeout of stops begun from now on.
    SetGracefulTimeout(Duration),
}

/// Why a graceful stop begins, which its first log line tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopCause {
    /// SIGTERM (and what the Python face's reference logs as one: its
    /// `shutdown()` sends SIGTERM to the master).
    Sigterm,
    /// A `shutdown()` call of the Rust or C face, or the control socket.
    Requested,
    /// A service's restart policy (`stop_on_exit`, a give-up), whose own
    /// line said why just before.
    Policy,
}

impl StopCause {
    fn line(self) -> &'static str {
        match self {
            StopCause::Sigterm => "Caught SIGTERM signal, graceful exiting of master process",
            StopCause::Requested => "Shutdown requested, graceful exiting of master process",
            StopCause::Policy => "Restart policy stop, graceful exiting of master process",
        }
    }
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `run()` began; `group_leader`: the master leads its process group;
    /// `notify`: systemd's notify socket is set (and the setting is on);
    /// `watchdog`: systemd's watchdog period for the master, if any.
    Start {
        group_leader: bool,
        notify: bool,
        watchdog: Option<Duration>,
    },
    /// One of the master's signals arrived.
    Signal(Sig),
    /// A worker process ended (its status was collected).
    ChildExited { pid: i32, exit: Exit },
    /// The [`Action::Fork`] made this process.
    Forked { pid: i32 },
    /// The [`Action::Fork`] failed.
    ForkFailed { error: String },
    /// The [`Action::RunHooks`] returned.
    HooksDone(HookKind),
    /// The [`Action::RunHooks`] of a reload ended early: a reload check
    /// refused the reload, for this reason. The reload is dropped.
    ReloadRefused { reason: String },
    /// The armed time was reached.
    Timer,
    /// A command.
    Command(Command),
    /// The wake-up callback asked to stop (a Python signal handler raised).
    Interrupted,
    /// No process of the master's group but the master still runs (after
    /// [`Action::WatchGroup`]; a zombie has ended).
    GroupGone,
    /// Worker `pid` announced that its coming exit is a restart (its
    /// `reload()` restarts it): it is respawned whatever its service's
    /// restart policy says, and its exit is not counted by it.
    RestartAnnounced { pid: i32 },
}

/// Log levels of the master's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Debug,
    Info,
    Error,
}

/// How `run()` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Graceful stop done: `run()` returns `Ok`.
    Graceful,
    /// Stopped because the wake-up callback asked: `run()` returns
    /// `Err(Interrupted)`.
    Interrupted,
    /// SIGINT or the graceful deadline: the process ends with status 1.
    FastExit,
    /// A graceful stop that a restart policy began (stop on exit, give
    /// up): `run()` gives back `status` (see [`Machine::stopped_by`]).
    Stopped { status: i32 },
}

/// Something to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Fork this worker, then report [`Event::Forked`] or
    /// [`Event::ForkFailed`].
    Fork {
        service: ServiceId,
        worker: WorkerId,
    },
    /// `kill(pid, sig)` for each pid.
    Signal { pids: Vec<i32>, sig: i32 },
    /// Signal every other process of the master's process group.
    SignalGroup { sig: i32 },
    /// Collect ended workers, reporting each as [`Event::ChildExited`].
    Reap,
    /// Run these hooks, then report [`Event::HooksDone`].
    RunHooks(HookKind),
    /// Run the dead-worker hooks.
    DeadWorkerHooks {
        service: ServiceId,
        worker: WorkerId,
        code: i32,
    },
    /// Log a line on the master's target.
    Log { level: Level, text: String },
    /// Tell systemd these, in one datagram.
    Notify(Vec<Notice>),
    /// Write the metrics file.
    WriteMetrics,
    /// End `run()`.
    Exit(Ending),
    /// SIGKILL these workers and every process they started.
    Kill { pids: Vec<i32> },
    /// Report [`Event::GroupGone`] once the process group has no other
    /// live member (at once if it has none now).
    WatchGroup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before `run()`.
    Ready { stop_asked: Option<StopCause> },
    /// Supervising. `starting` until every wanted worker was forked once;
    /// `reloading` while the reload hooks run.
    Supervising { starting: bool, reloading: bool },
    /// Graceful stop; the terminate hooks run until `hooks_done`;
    /// `draining` once the workers are gone and the rest of the process
    /// group got SIGTERM, until it is gone too.
    Stopping {
        deadline: Option<Instant>,
        interrupted: bool,
        hooks_done: bool,
        draining: Option<Drain>,
    },
    /// SIGINT or deadline: waiting `kill_grace` for the workers (and the
    /// process group), then SIGKILL to what is left (`killed`), then exit
    /// 1 once all of it is gone.
    FastExit {
        until: Instant,
        by_deadline: bool,
        killed: bool,
        group_gone: bool,
    },
    /// `run()` ended.
    Done,
}

#[derive(Debug)]
struct Service {
    id: ServiceId,
    name: String,
    /// The face's own id of the service, if it has one (the Python face's
    /// `uuid.UUID`, as text).
    key: Option<String>,
    workers: i64,
    /// Ids below `workers` with no running process, lowest first.
    missing: BTreeSet<WorkerId>,
    counters: Counters,
    /// Its restart policy (the contract's by default).
    policy: ServicePolicy,
    /// Its failures within the give-up window.
    failures: FailureWindow,
    /// The status of the last failed exit of an id that finished.
    final_failure: Option<i32>,
}

impl Service {
    fn count(&self) -> usize {
        self.workers.max(0) as usize
    }
}

/// The end of a graceful stop, once the workers are gone: what they left
/// in the process group got SIGTERM, and SIGKILL `until` (`kill_grace`
/// later) if still there; then a last wait for it (`killed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Drain {
    until: Instant,
    killed: bool,
}

/// A running worker process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Worker {
    pub service: ServiceId,
    pub worker: WorkerId,
    pub started: Instant,
    /// SIGTERM was sent to it.
    pub stopping: bool,
    /// It announced that it restarts ([`Event::RestartAnnounced`]).
    pub restarting: bool,
}

/// What the master remembers of a worker id across its processes.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdRecord {
    pub forks: u64,
    pub last_exit: Option<LastExit>,
    pub running: Option<i32>,
    /// Its restart policy does not start it again.
    pub finished: bool,
    /// Its respawn waits until then (backoff).
    pub due: Option<Instant>,
    /// Counted exits in a row (the backoff's exponent).
    pub streak: u32,
    /// Counted exits that failed.
    pub failures: u64,
    /// Its last process announced its exit as a restart.
    pub restarted: bool,
}

/// The master's whole state.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    group_leader: bool,
    wait_interval: Duration,
    graceful_timeout: Duration,
    services: Vec<Service>,
    workers: HashMap<i32, Worker>,
    ids: HashMap<(ServiceId, WorkerId), IdRecord>,
    limiter: ForkLimiter,
    /// When the next fork may go, once planned.
    next_fork_at: Option<Instant>,
    /// The limiter's long wait is on until then.
    too_fast_until: Option<Instant>,
    /// When the last fork happened (kept across limiter resets: the
    /// spacing of forks is not the limiter's history).
    last_fork: Option<Instant>,
    /// The worker a fork was asked for, until its outcome is reported.
    forking: Option<(ServiceId, WorkerId)>,
    /// A count changed: workers above it get SIGTERM at the next pass.
    counts_changed: bool,
    started_at: Option<Instant>,
    armed: Option<Instant>,
    /// How often the metrics file is written, when there is one.
    metrics_every: Option<Duration>,
    next_metrics: Option<Instant>,
    /// How long after the fast exit's SIGINT what is left gets SIGKILL.
    kill_grace: Duration,
    /// systemd is told (the notify socket is set).
    notify: bool,
    /// Half the watchdog period, and when `WATCHDOG=1` is next due.
    watchdog_every: Option<Duration>,
    next_watchdog: Option<Instant>,
    /// Something changed since the last `STATUS=`; when the next may go;
    /// the last one sent.
    status_dirty: bool,
    status_next: Option<Instant>,
    status_sent: Option<String>,
    /// The time of the step under way.
    now: Instant,
    /// Draws the backoff's jitter.
    rng: Rng,
    /// A restart policy stopped the manager: the status and why.
    policy_stop: Option<(i32, String)>,
    /// When the next id of a service with a backoff may be forked.
    backoff_at: Option<Instant>,
}

impl Machine {
    pub(crate) fn new(wait_interval: Duration, graceful_timeout: Duration) -> Self {
        Machine {
            phase: Phase::Ready { stop_asked: None },
            group_leader: false,
            wait_interval,
            graceful_timeout,
            services: Vec::new(),
            workers: HashMap::new(),
            ids: HashMap::new(),
            limiter: ForkLimiter::new(),
            next_fork_at: None,
            too_fast_until: None,
            last_fork: None,
            forking: None,
            counts_changed: false,
            started_at: None,
            armed: None,
            metrics_every: None,
            next_metrics: None,
            kill_grace: FAST_EXIT_GRACE,
            notify: false,
            watchdog_every: None,
            next_watchdog: None,
            status_dirty: false,
            status_next: None,
            status_sent: None,
            now: Instant::now(),
            rng: Rng::new(0x636f_7479_6c65_646f),
            policy_stop: None,
            backoff_at: None,
        }
    }

    /// How long after the fast exit's SIGINT what is left gets SIGKILL.
    pub(crate) fn set_kill_grace(&mut self, grace: Duration) {
        self.kill_grace = grace;
    }

    /// Writes the metrics file every `every` while `run()` runs.
    pub(crate) fn write_metrics_every(&mut self, every: Duration) {
        self.metrics_every = Some(every.max(Duration::from_millis(100)));
    }

    // ---- queries --------------------------------------------------------

    /// Adds a service (before `run()` or while it runs).
    pub(crate) fn add_service(
        &mut self,
        id: ServiceId,
        name: String,
        key: Option<String>,
        workers: i64,
    ) {
        self.services.push(Service {
            id,
            name,
            key,
            workers: 0,
            missing: BTreeSet::new(),
            counters: Counters::default(),
            policy: ServicePolicy::default(),
            failures: FailureWindow::default(),
            final_failure: None,
        });
        self.set_count(id, workers);
    }

    /// The service whose face key is `key`.
    pub(crate) fn service_of_key(&self, key: &str) -> Option<ServiceId> {
        self.services
            .iter()
            .find(|s| s.key.as_deref() == Some(key))
            .map(|s| s.id)
    }

    /// The name `service` was added with.
    pub(crate) fn name_of(&self, service: ServiceId) -> Option<&str> {
        self.service(service).map(|s| s.name.as_str())
    }

    /// The face key of `service`.
    pub(crate) fn key_of(&self, service: ServiceId) -> Option<&str> {
        self.service(service).and_then(|s| s.key.as_deref())
    }

    /// The count of `service`, if known.
    pub(crate) fn workers_of(&self, service: ServiceId) -> Option<i64> {
        self.service(service).map(|s| s.workers)
    }

    /// Whether a [`Command::Scale`] would be taken: the service exists and
    /// `workers` is at least `1 - current` (the contract's rule) and at
    /// most [`MAX_WORKERS`](crate::MAX_WORKERS).
    pub(crate) fn check_scale(&self, service: ServiceId, workers: i64) -> Result<(), crate::Error> {
        let current = self
            .workers_of(service)
            .ok_or(crate::Error::UnknownService(service))?;
        super::check_count(1i64.saturating_sub(current), workers)
    }

    pub(crate) fn graceful_timeout(&self) -> Duration {
        self.graceful_timeout
    }

    /// Whether `pid` is a running worker.
    pub(crate) fn contains(&self, pid: i32) -> bool {
        self.workers.contains_key(&pid)
    }

    /// Every running worker's pid.
    pub(crate) fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.workers.keys().copied()
    }

    /// Whether `run()` is past its start and not done.
    pub(crate) fn is_running(&self) -> bool {
        !matches!(self.phase, Phase::Ready { .. } | Phase::Done)
    }

    pub(crate) fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. } | Phase::FastExit { .. })
    }

    pub(crate) fn state(&self) -> ManagerState {
        match self.phase {
            Phase::Ready { .. } => ManagerState::Starting,
            Phase::Supervising {
                reloading: true, ..
            } => ManagerState::Reloading,
            Phase::Supervising { starting: true, .. } => ManagerState::Starting,
            Phase::Supervising { .. } => ManagerState::Running,
            Phase::Stopping { .. } | Phase::FastExit { .. } | Phase::Done => ManagerState::Stopping,
        }
    }

    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// The limiter's long wait, while it holds a fork back.
    pub(crate) fn limiter_until(&self, now: Instant) -> Option<Instant> {
        self.too_fast_until.filter(|t| *t > now)
    }

    /// Services with their counters, running workers and id records, for
    /// the status view.
    pub(crate) fn services_view(
        &self,
    ) -> impl Iterator<Item = (ServiceId, &str, Option<&str>, i64, &Counters)> + '_ {
        self.services.iter().map(|s| {
            (
                s.id,
                s.name.as_str(),
                s.key.as_deref(),
                s.workers,
                &s.counters,
            )
        })
    }

    pub(crate) fn id_record(&self, service: ServiceId, worker: WorkerId) -> Option<&IdRecord> {
        self.ids.get(&(service, worker))
    }

    pub(crate) fn worker(&self, pid: i32) -> Option<&Worker> {
        self.workers.get(&pid)
    }

    /// Worker ids of `service` at or above its count that still run.
    pub(crate) fn extra_ids(&self, service: ServiceId) -> BTreeSet<WorkerId> {
        let count = self.service(service).map_or(0, Service::count);
        self.workers
            .values()
            .filter(|w| w.service == service && w.worker >= count)
            .map(|w| w.worker)
            .collect()
    }

    /// The pid of worker `worker` of `service`, when it runs and is not
    /// stopping.
    pub(crate) fn running_pid(&self, service: ServiceId, worker: WorkerId) -> Option<i32> {
        let pid = self.ids.get(&(service, worker))?.running?;
        self.workers.get(&pid).filter(|w| !w.stopping).map(|_| pid)
    }

    /// The armed timer: when the machine wants [`Event::Timer`]. Every
    /// step arms it anew (the loop reads it after performing the actions,
    /// since an action's own events step the machine again).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.armed
    }

    // ---- the transition function ---------------------------------------

    /// Applies `event` at `now`; returns what to do, in order.
    pub(crate) fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.step_into(event, now, &mut out);
        out
    }

    /// [`Machine::step`], appending to `out` (which the loop reuses).
    pub(crate) fn step_into(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        self.now = now;
        let timer = event == Event::Timer;
        match event {
            Event::Start {
                group_leader,
                notify,
                watchdog,
            } => self.start(group_leader, notify, watchdog, now, out),
            Event::Signal(Sig::Int) => self.sigint(now, out),
            Event::Signal(Sig::Chld) => {
                if self.is_running() {
                    out.push(Action::Reap);
                }
            }
            Event::Signal(Sig::Term) => self.graceful_stop(Some(StopCause::Sigterm), now, out),
            Event::Signal(Sig::Hup) => self.reload(now, out),
            Event::ChildExited { pid, exit } => self.child_exited(pid, exit, now, out),
            Event::Forked { pid } => self.forked(pid, now, out),
            Event::ForkFailed { error } => {
                if let Some((_, worker)) = self.forking.take() {
                    out.push(log(
                        Level::Error,
                        format!("Failed to fork worker {worker}: {error}"),
                    ));
                    self.maybe_finish(out);
                }
            }
            Event::HooksDone(kind) => self.hooks_done(kind, now, out),
            Event::ReloadRefused { reason } => self.reload_refused(&reason, now, out),
            Event::Timer => self.timer(now, out),
            Event::Command(cmd) => self.command(cmd, now, out),
            Event::Interrupted => self.graceful_stop(None, now, out),
            Event::GroupGone => self.group_gone(out),
            Event::RestartAnnounced { pid } => self.restart_announced(pid),
        }
        if self.phase != Phase::Done {
            self.supervise(now, out);
            self.status_update(timer, now, out);
            self.arm();
        }
    }

    fn start(
        &mut self,
        group_leader: bool,
        notify: bool,
        watchdog: Option<Duration>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Phase::Ready { stop_asked } = self.phase else {
            return;
        };
        if self.metrics_every.is_some() {
            self.next_metrics = Some(now);
        }
        self.group_leader = group_leader;
        self.started_at = Some(now);
        self.phase = Phase::Supervising {
            starting: true,
            reloading: false,
        };
        self.notify = notify;
        if notify {
            let mut notices = vec![Notice::Ready];
            if let Some(period) = watchdog {
                // Half the period, as systemd advises: a late loop is
                // still on time once.
                let every = (period / 2).max(Duration::from_millis(1));
                self.watchdog_every = Some(every);
                self.next_watchdog = Some(now + every);
                notices.push(Notice::Watchdog);
            }
            self.tell(notices, now, out);
        }
        if let Some(cause) = stop_asked {
            self.graceful_stop(Some(cause), now, out);
        }
    }

    /// Sends `notices` to systemd with the current `STATUS=`.
    fn tell(&mut self, mut notices: Vec<Notice>, now: Instant, out: &mut Vec<Action>) {
        if !self.notify {
            return;
        }
        let text = self.status_text(now);
        notices.push(Notice::Status(text.clone()));
        self.status_sent = Some(text);
        self.status_next = Some(now + STATUS_EVERY);
        out.push(Action::Notify(notices));
    }

    /// `STATUS=` when the picture changed, at most every [`STATUS_EVERY`].
    /// Computed only then: the text costs a pass over the workers.
    fn status_update(&mut self, timer: bool, now: Instant, out: &mut Vec<Action>) {
        if !self.notify {
            return;
        }
        // A timer that only kept time (watchdog, metrics) changed nothing.
        if !timer
            || out
                .iter()
                .any(|a| !matches!(a, Action::Notify(_) | Action::WriteMetrics))
        {
            self.status_dirty = true;
        }
        if !self.status_dirty || self.status_next.is_some_and(|t| now < t) {
            return;
        }
        self.status_dirty = false;
        let text = self.status_text(now);
        if self.status_sent.as_deref() != Some(text.as_str()) {
            self.status_next = Some(now + STATUS_EVERY);
            out.push(Action::Notify(vec![Notice::Status(text.clone())]));
            self.status_sent = Some(text);
        }
    }

    fn reload(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Supervising {
            starting,
            reloading: false,
        } = self.phase
        {
            self.phase = Phase::Supervising {
                starting,
                reloading: true,
            };
            self.tell(vec![Notice::Reloading], now, out);
            out.push(Action::RunHooks(HookKind::Reload));
        }
    }

    /// A reload check refused the reload under way: it ends there, logged,
    /// with no SIGHUP to the workers and the fork history kept.
    fn reload_refused(&mut self, reason: &str, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Supervising {
            starting,
            reloading: true,
        } = self.phase
        {
            self.phase = Phase::Supervising {
                starting,
                reloading: false,
            };
            out.push(log(
                Level::Error,
                format!("Reload refused by a reload check: {reason}"),
            ));
            self.tell(vec![Notice::Ready], now, out);
        }
    }

    fn hooks_done(&mut self, kind: HookKind, now: Instant, out: &mut Vec<Action>) {
        match (kind, self.phase) {
            (
                HookKind::Reload,
                Phase::Supervising {
                    starting,
                    reloading: true,
                },
            ) => {
                self.phase = Phase::Supervising {
                    starting,
                    reloading: false,
                };
                self.reset_limiter();
                let pids = self.sorted_pids();
                for s in &mut self.services {
                    if self.workers.values().any(|w| w.service == s.id) {
                        s.counters.reloads += 1;
                    }
                }
                if !pids.is_empty() {
                    out.push(Action::Signal {
                        pids,
                        sig: libc::SIGHUP,
                    });
                }
                self.tell(vec![Notice::Ready], now, out);
            }
            (
                HookKind::Terminate,
                Phase::Stopping {
                    deadline,
                    interrupted,
                    hooks_done: false,
                    draining,
                },
            ) => {
                // The workers' own timeouts run from the SIGTERM below.
                let deadline = match (deadline, self.workers_deadline(now)) {
                    (Some(d), Some(w)) => Some(d.max(w)),
                    (d, _) => d,
                };
                self.phase = Phase::Stopping {
                    deadline,
                    interrupted,
                    hooks_done: true,
                    draining,
                };
                if let Some(extend) = self.stop_extension(now) {
                    self.tell(vec![extend], now, out);
                }
                out.push(log(
                    Level::Debug,
                    "Killing services with signal SIGTERM".into(),
                ));
                self.stop_all(out);
                out.push(log(Level::Debug, "Waiting services to terminate".into()));
                self.maybe_finish(out);
            }
            _ => {}
        }
    }

    fn child_exited(&mut self, pid: i32, exit: Exit, now: Instant, out: &mut Vec<Action>) {
        let Some(w) = self.workers.remove(&pid) else {
            return;
        };
        let verdict = self.judge(&w, exit, now);
        let key = (w.service, w.worker);
        let record = self.ids.entry(key).or_default();
        record.running = None;
        record.restarted = w.restarting;
        record.last_exit = Some(match exit {
            Exit::Code(code) => LastExit::Exit { code },
            Exit::Signal(signal) => match self.phase {
                Phase::FastExit {
                    by_deadline: true, ..
                } => LastExit::Deadline {
                    signal,
                    name: signal_name(signal),
                },
                _ => LastExit::Signal {
                    signal,
                    name: signal_name(signal),
                },
            },
            Exit::Lost => LastExit::Lost,
        });
        if let Some(s) = self.services.iter_mut().find(|s| s.id == w.service) {
            match exit {
                Exit::Code(0) => s.counters.exits_clean += 1,
                Exit::Code(_) | Exit::Lost => s.counters.exits_error += 1,
                Exit::Signal(_) => s.counters.exits_signal += 1,
            }
            if w.worker < s.count() && verdict.respawn() {
                s.missing.insert(w.worker);
            }
        }
        match self.phase {
            Phase::Supervising { .. } => {
                let code = exit.hook_code();
                out.push(Action::DeadWorkerHooks {
                    service: w.service,
                    worker: w.worker,
                    code,
                });
                out.push(log(
                    Level::Info,
                    match exit {
                        Exit::Signal(sig) => {
                            format!("Child {pid} killed by signal {}", signal_name(sig))
                        }
                        _ => format!("Child {pid} exited with status {code}"),
                    },
                ));
                self.apply(&w, verdict, now, out);
            }
            Phase::Stopping { .. } | Phase::FastExit { .. } => self.maybe_finish(out),
            Phase::Ready { .. } | Phase::Done => {}
        }
    }

    fn forked(&mut self, pid: i32, now: Instant, out: &mut Vec<Action>) {
        let Some((service, worker)) = self.forking.take() else {
            return;
        };
        // A stop that began while this fork was under way: the new worker
        // gets the signal the others got.
        let late = match self.phase {
            Phase::Stopping {
                hooks_done: true, ..
            } => Some(libc::SIGTERM),
            Phase::FastExit { killed: false, .. } => Some(libc::SIGINT),
            Phase::FastExit { killed: true, .. } => Some(libc::SIGKILL),
            _ => None,
        };
        self.workers.insert(
            pid,
            Worker {
                service,
                worker,
                started: now,
                stopping: late.is_some(),
                restarting: false,
            },
        );
        if self.service(service).map_or(true, |s| worker >= s.count()) {
            // Its count went down while it was being forked.
            self.counts_changed = true;
        }
        if let Some(sig) = late {
            out.push(Action::Signal {
                pids: vec![pid],
                sig,
            });
        }
        let record = self.ids.entry((service, worker)).or_default();
        record.forks += 1;
        record.running = Some(pid);
        record.due = None;
        let restart = record.forks > 1;
        if let Some(s) = self.services.iter_mut().find(|s| s.id == service) {
            s.missing.remove(&worker);
            s.counters.starts += 1;
            if restart {
                s.counters.restarts += 1;
            }
        }
        if let Phase::Supervising {
            starting: true,
            reloading,
        } = self.phase
        {
            if self.next_missing().is_none() && !self.first_starts_left() {
                self.phase = Phase::Supervising {
                    starting: false,
                    reloading,
                };
            }
        }
    }

    fn timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let (Some(at), Some(every)) = (self.next_watchdog, self.watchdog_every) {
            if now >= at {
                out.push(Action::Notify(vec![Notice::Watchdog]));
                self.next_watchdog = Some(now + every);
            }
        }
        if let (Some(at), Some(every)) = (self.next_metrics, self.metrics_every) {
            if now >= at {
                out.push(Action::WriteMetrics);
                self.next_metrics = Some((at + every).max(now));
            }
        }
        match self.phase {
            Phase::Stopping {
                deadline: Some(d), ..
            } if now >= d => self.fast_exit(
                "Graceful shutdown timeout exceeded, instantaneous exiting of master process",
                true,
                now,
                out,
            ),
            Phase::Stopping {
                deadline,
                interrupted,
                hooks_done,
                draining: Some(Drain { until, killed }),
            } if now >= until => {
                if killed {
                    out.push(log(
                        Level::Error,
                        "Processes of the group outlived SIGKILL".to_string(),
                    ));
                    return self.finish_graceful(interrupted, out);
                }
                out.push(log(
                    Level::Info,
                    format!(
                        "Still alive {} ms after SIGTERM, killing with SIGKILL: the rest of the process group",
                        self.kill_grace.as_millis()
                    ),
                ));
                self.phase = Phase::Stopping {
                    deadline,
                    interrupted,
                    hooks_done,
                    draining: Some(Drain {
                        until: now + KILL_WAIT,
                        killed: true,
                    }),
                };
                out.push(Action::SignalGroup { sig: libc::SIGKILL });
                out.push(Action::WatchGroup);
            }
            Phase::FastExit {
                until,
                by_deadline,
                killed: false,
                ..
            } if now >= until => self.kill_the_rest(by_deadline, now, out),
            Phase::FastExit {
                until,
                killed: true,
                ..
            } if now >= until => {
                let left: Vec<String> = self.sorted_pids().iter().map(i32::to_string).collect();
                out.push(log(
                    Level::Error,
                    if left.is_empty() {
                        "Exiting: processes of the group outlived SIGKILL".to_string()
                    } else {
                        format!("Exiting: workers {} outlived SIGKILL", left.join(", "))
                    },
                ));
                self.finish(Ending::FastExit, out)
            }
            Phase::Supervising { .. } if self.forking.is_none() => {
                let limited = self
                    .next_fork_at
                    .is_some_and(|at| now >= at)
                    .then(|| self.next_missing())
                    .flatten();
                let backoff = self.backoff_due(now);
                // Services start in the order they were added.
                let limited = match (limited, backoff) {
                    (Some(l), Some(b)) if self.position(b.0) < self.position(l.0) => None,
                    (l, _) => l,
                };
                if let Some((service, worker)) = limited {
                    self.limiter.record(now);
                    self.last_fork = Some(now);
                    self.next_fork_at = None;
                    self.too_fast_until = None;
                    self.forking = Some((service, worker));
                    out.push(Action::Fork { service, worker });
                } else if let Some((service, worker)) = backoff {
                    // A service with a backoff: an id whose wait is over,
                    // outside the limiter.
                    self.last_fork = Some(now);
                    self.forking = Some((service, worker));
                    out.push(Action::Fork { service, worker });
                }
            }
            _ => {}
        }
    }

    fn command(&mut self, cmd: Command, now: Instant, out: &mut Vec<Action>) {
        match cmd {
            Command::Scale { service, workers } => {
                // The callers validate the count (the contract's rule for
                // reconfigure, a range for the control socket).
                if self.service(service).is_some() {
                    self.set_count(service, workers);
                    self.reset_limiter();
                }
            }
            Command::ResetLimiter => self.reset_limiter(),
            Command::Restart { service, worker } => {
                if !matches!(self.phase, Phase::Supervising { .. }) {
                    return;
                }
                if let Some(pid) = self.running_pid(service, worker) {
                    if let Some(w) = self.workers.get_mut(&pid) {
                        w.stopping = true;
                    }
                    out.push(Action::Signal {
                        pids: vec![pid],
                        sig: libc::SIGTERM,
                    });
                }
            }
            Command::SetGracefulTimeout(t) => self.graceful_timeout = t,
            // As SIGTERM and SIGHUP.
            Command::Stop(cause) => self.graceful_stop(Some(cause), now, out),
            Command::Reload => self.reload(now, out),
        }
    }

    // ---- supervision ----------------------------------------------------

    fn set_count(&mut self, id: ServiceId, workers: i64) {
        let ids = &self.ids;
        let Some(s) = self.services.iter_mut().find(|s| s.id == id) else {
            return;
        };
        s.workers = workers;
        let count = s.count();
        s.missing = (0..count)
            .filter(|w| {
                ids.get(&(id, *w))
                    .map_or(true, |r| r.running.is_none() && !r.finished)
            })
            .collect();
        self.counts_changed = true;
    }

    fn reset_limiter(&mut self) {
        self.limiter.reset();
        self.next_fork_at = None;
        self.too_fast_until = None;
    }

    fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The next id to fork of the services the fork-rate limiter governs
    /// (those without a backoff).
    fn next_missing(&self) -> Option<(ServiceId, WorkerId)> {
        self.services
            .iter()
            .filter(|s| s.policy.backoff.is_none())
            .find_map(|s| s.missing.first().map(|w| (s.id, *w)))
    }

    /// E, the limiter's count: the workers of the services it governs.
    fn expected(&self) -> usize {
        self.services
            .iter()
            .filter(|s| s.policy.backoff.is_none())
            .map(Service::count)
            .sum()
    }

    fn sorted_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.workers.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Stops workers above their count, and plans the next fork.
    fn supervise(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Supervising { .. }) {
            return;
        }
        self.plan_backoff(now);
        if std::mem::take(&mut self.counts_changed) {
            let counts: HashMap<ServiceId, usize> =
                self.services.iter().map(|s| (s.id, s.count())).collect();
            let mut stop = Vec::new();
            for (pid, w) in self.workers.iter_mut() {
                if !w.stopping && w.worker >= counts.get(&w.service).copied().unwrap_or(0) {
                    w.stopping = true;
                    stop.push(*pid);
                }
            }
            if !stop.is_empty() {
                stop.sort_unstable();
                out.push(Action::Signal {
                    pids: stop,
                    sig: libc::SIGTERM,
                });
            }
        }
        if self.forking.is_some() || self.next_fork_at.is_some() {
            return;
        }
        let Some((service, _)) = self.next_missing() else {
            return;
        };
        let delay = self.limiter.plan(now, self.expected(), self.wait_interval);
        let at = match delay {
            // `wait_interval` is the time between two forks: a fork long
            // after the previous one (a lone respawn) goes at once, a batch
            // is spread out.
            Delay::Interval(d) => match self.last_fork {
                Some(last) => (last + d).max(now),
                None => now,
            },
            other => now + other.duration(),
        };
        self.next_fork_at = Some(at);
        if delay == Delay::TooFast {
            self.too_fast_until = Some(at);
            if let Some(s) = self.services.iter_mut().find(|s| s.id == service) {
                s.counters.limiter_waits += 1;
            }
            out.push(log(Level::Info, "Forking too fast, sleeping".into()));
        }
    }

    /// Arms the timer for the earliest deadline.
    fn arm(&mut self) {
        let phase = match self.phase {
            Phase::Supervising { .. } if self.forking.is_none() => {
                self.next_fork_at.into_iter().chain(self.backoff_at).min()
            }
            Phase::Stopping {
                deadline, draining, ..
            } => match (deadline, draining.map(|d| d.until)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Phase::FastExit { until, .. } => Some(until),
            _ => None,
        };
        let status = self.status_next.filter(|_| self.status_dirty);
        self.armed = [phase, self.next_metrics, self.next_watchdog, status]
            .into_iter()
            .flatten()
            .min();
    }
}

#[path = "machine_status.rs"]
mod status_text;

fn log(level: Level, text: String) -> Action {
    Action::Log { level, text }
}

// Stops: the graceful stop, the fast exit and their endings.
#[path = "machine_stop.rs"]
mod stop_rules;

// Restart policies: the rules, in a file of their own.
#[path = "machine_policy.rs"]
mod policy_rules;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
