//! The master process: the public [`ServiceManager`] and its event loop.
//!
//! The loop is single-threaded. It waits in one `poll()` on the self-pipe
//! the signal handlers write to, with a timeout for the next timer (the
//! fork-rate limiter's wait, the graceful-shutdown deadline), and asks the
//! pure [`Supervisor`](crate::supervisor) what to do next.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, Pid};

use crate::hooks::{run_each, HookResult, Hooks};
use crate::logging::{panic_message, MANAGER};
use crate::signals::{signal_name, Sig, SignalFlags};
use crate::supervisor::{Step, Supervisor};
use crate::title::{self, TitleMode};
use crate::worker::{self, WorkerContext};
use crate::{notify, sys, Error, Service, ServiceExit, ServiceId, WorkerId};

/// The manager's settings; `Settings::default()` gives Cotyledon's defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Time between two forks (default 10 ms): workers started together are
    /// spread out by it; a fork long after the previous one (a lone
    /// respawn) is not delayed.
    pub wait_interval: Duration,
    /// How long a graceful shutdown may take, for the master and for each
    /// worker's `terminate()` (default 60 s; `ZERO` waits forever). A
    /// service overrides it for its workers with
    /// [`Service::graceful_shutdown_timeout`].
    pub graceful_shutdown_timeout: Duration,
    /// Refuse a second manager while one is alive (default true).
    pub single_instance: bool,
    /// Become a session leader at creation, when possible (default true).
    pub session_leader: bool,
    /// How process titles are set (default [`TitleMode::Comm`]).
    pub titles: TitleMode,
    /// Send `READY=1` to systemd when `run()` starts (default true).
    pub notify_systemd: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait_interval: Duration::from_millis(10),
            graceful_shutdown_timeout: Duration::from_secs(60),
            single_instance: true,
            session_leader: true,
            titles: TitleMode::Comm,
            notify_systemd: true,
        }
    }
}

/// What a fork step returns: see [`ServiceManager::set_fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkOutcome {
    /// In the master: the new worker's pid.
    Parent(i32),
    /// In the new worker process.
    Child,
}

pub(crate) type Factory = Box<dyn FnMut(WorkerId) -> Result<Box<dyn Service>, ServiceExit> + Send>;
type ForkFn = Box<dyn FnMut() -> io::Result<ForkOutcome> + Send>;
pub(crate) type WakeFn = Box<dyn FnMut() -> Option<i32> + Send>;
/// Called before the process ends with the given status.
pub(crate) type ExitFn = Arc<dyn Fn(i32) + Send + Sync>;

struct ServiceEntry {
    id: ServiceId,
    name: String,
    factory: Factory,
}

/// What the loop and the [`ManagerHandle`]s share.
struct Shared {
    control: Mutex<Control>,
    // The self-pipe: the signal handlers, `shutdown()` and Python's wakeup fd
    // write to it; the loop polls it. Kept here so a handle never writes to
    // a closed fd.
    wake_r: OwnedFd,
    wake_w: OwnedFd,
}

struct Control {
    counts: Vec<(ServiceId, i64)>,
    counts_changed: bool,
    reset_limiter: bool,
    shutdown: bool,
    graceful_shutdown_timeout: Duration,
    /// Hooks added through a handle, for the loop to take before it next
    /// runs hooks or forks.
    added: Hooks,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic while holding it cannot leave Control inconsistent.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn wake(&self) {
        sys::poke(self.wake_w.as_raw_fd());
    }
}

static SEATBELT: AtomicBool = AtomicBool::new(false);
static NEXT_SERVICE_ID: AtomicU64 = AtomicU64::new(1);

/// Held while a manager lives, when `single_instance` is on.
struct Seatbelt;

impl Seatbelt {
    fn fasten() -> Result<Self, Error> {
        if SEATBELT.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyCreated);
        }
        Ok(Seatbelt)
    }
}

impl Drop for Seatbelt {
    fn drop(&mut self) {
        SEATBELT.store(false, Ordering::Release);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Lifecycle {
    Ready,
    Running,
    Done,
}

/// Starts, supervises and stops the worker processes of one or more
/// services. One per process.
///
/// ```no_run
/// use cotyledon::{Service, ServiceManager};
///
/// struct Hello;
/// impl Service for Hello {
///     fn run(&self) -> cotyledon::ServiceResult {
///         println!("hello from {}", std::process::id());
///         Ok(())
///     }
/// }
///
/// fn main() -> Result<(), cotyledon::Error> {
///     let mut manager = ServiceManager::new()?;
///     manager.add("hello", 2, |_worker_id| Ok(Hello))?;
///     manager.run() // until SIGTERM; SIGINT exits the process with status 1
/// }
/// ```
pub struct ServiceManager {
    settings: Settings,
    shared: Arc<Shared>,
    services: Vec<ServiceEntry>,
    hooks: Hooks,
    fork: ForkFn,
    on_wakeup: Option<WakeFn>,
    on_exit: Option<ExitFn>,
    lifecycle: Lifecycle,
    _seatbelt: Option<Seatbelt>,
}

/// A cheap, cloneable handle to a manager, for hooks and other threads:
/// reconfigure a service, change the shutdown timeout, add hooks (also
/// while `run()` runs), or shut down.
///
/// ```
/// # use cotyledon::{Service, ServiceManager, Settings};
/// struct Idle;
/// impl Service for Idle {}
/// let mut settings = Settings::default();
/// settings.single_instance = false;
/// settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings).unwrap();
/// let web = manager.add("web", 2, |_| Ok(Idle)).unwrap();
/// let handle = manager.handle();
/// // From a reload hook: grow the service, and from then on watch deaths.
/// manager.on_reload(move || {
///     handle.reconfigure(web, 4)?;
///     handle.on_dead_worker(|_, worker, status| {
///         log::warn!("worker {worker} ended with {status}");
///         Ok(())
///     });
///     Ok(())
/// });
/// ```
#[derive(Clone)]
pub struct ManagerHandle {
    shared: Arc<Shared>,
}

impl ManagerHandle {
    /// Changes the number of workers of `service` (see
    /// [`ServiceManager::reconfigure`]).
    pub fn reconfigure(&self, service: ServiceId, workers: i64) -> Result<(), Error> {
        let mut c = self.shared.lock();
        let slot = c
            .counts
            .iter_mut()
            .find(|(id, _)| *id == service)
            .ok_or(Error::UnknownService(service))?;
        let minimum = 1 - slot.1;
        if workers < minimum {
            return Err(Error::InvalidWorkers {
                minimum,
                given: workers,
            });
        }
        slot.1 = workers;
        c.counts_changed = true;
        c.reset_limiter = true;
        drop(c);
        self.shared.wake();
        Ok(())
    }

    /// Forgets the fork history, so that the next forks wait only
    /// `wait_interval` (SIGHUP and reconfigure do the same).
    pub fn reset_limiter(&self) {
        self.shared.lock().reset_limiter = true;
        self.shared.wake();
    }

    /// The number of workers `service` is configured with.
    pub fn workers(&self, service: ServiceId) -> Option<i64> {
        self.shared
            .lock()
            .counts
            .iter()
            .find(|(id, _)| *id == service)
            .map(|c| c.1)
    }

    /// Starts a graceful shutdown, as SIGTERM does; logs
    /// `Manager shutdown requested`. Returns at once. Harmless when the
    /// manager already stopped or is stopping.
    pub fn shutdown(&self) {
        log::info!(target: MANAGER, "Manager shutdown requested");
        self.shared.lock().shutdown = true;
        self.shared.wake();
    }

    /// Changes the manager's graceful shutdown timeout (`ZERO` = forever);
    /// workers started afterwards use the new value.
    pub fn set_graceful_shutdown_timeout(&self, timeout: Duration) {
        self.shared.lock().graceful_shutdown_timeout = timeout;
    }

    /// The manager's graceful shutdown timeout.
    pub fn graceful_shutdown_timeout(&self) -> Duration {
        self.shared.lock().graceful_shutdown_timeout
    }

    /// Adds a terminate hook (see [`ServiceManager::on_terminate`]), also
    /// while `run()` runs (from a hook or another thread). Like every hook
    /// added through a handle, it runs from the next such event on, after
    /// the hooks added before it.
    pub fn on_terminate(&self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.shared.lock().added.terminate.push(Box::new(hook));
    }

    /// Adds a reload hook (see [`ServiceManager::on_reload`]), also while
    /// `run()` runs. A reload hook that adds one does not see it run on the
    /// same SIGHUP: it runs from the next one.
    pub fn on_reload(&self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.shared.lock().added.reload.push(Box::new(hook));
    }

    /// Adds a new-worker hook (see [`ServiceManager::on_new_worker`]), also
    /// while `run()` runs: workers forked from then on run it.
    pub fn on_new_worker(
        &self,
        hook: impl FnMut(ServiceId, WorkerId, &dyn Service) -> HookResult + Send + 'static,
    ) {
        self.shared.lock().added.new_worker.push(Box::new(hook));
    }

    /// Adds a dead-worker hook (see [`ServiceManager::on_dead_worker`]),
    /// also while `run()` runs: it is called from the next worker's death
    /// on.
    ///
    /// A hook is application code in the master's loop: a worker's death
    /// that has one makes the loop check all its workers, in case the hook
    /// reaped one of them itself.
    pub fn on_dead_worker(
        &self,
        hook: impl FnMut(ServiceId, WorkerId, i32) -> HookResult + Send + 'static,
    ) {
        self.shared.lock().added.dead_worker.push(Box::new(hook));
    }
}

impl ServiceManager {
    /// A manager with the default [`Settings`].
    ///
    /// Fails with [`Error::AlreadyCreated`] when another manager is alive.
    pub fn new() -> Result<Self, Error> {
        Self::with_settings(Settings::default())
    }

    /// A manager with the given settings. Sets the master's process title
    /// and makes the process a session leader when it can.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut settings = cotyledon::Settings::default();
    /// settings.wait_interval = Duration::ZERO;
    /// settings.session_leader = false;
    /// let manager = cotyledon::ServiceManager::with_settings(settings).unwrap();
    /// assert_eq!(manager.handle().graceful_shutdown_timeout(), Duration::from_secs(60));
    /// ```
    pub fn with_settings(settings: Settings) -> Result<Self, Error> {
        let seatbelt = if settings.single_instance {
            Some(Seatbelt::fasten()?)
        } else {
            None
        };
        let (wake_r, wake_w) = sys::nonblocking_pipe()?;
        title::set(settings.titles, &title::master_title());
        if settings.session_leader {
            // Fails when already a process group leader: fine.
            let _ = nix::unistd::setsid();
        }
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                counts: Vec::new(),
                counts_changed: false,
                reset_limiter: false,
                shutdown: false,
                graceful_shutdown_timeout: settings.graceful_shutdown_timeout,
                added: Hooks::default(),
            }),
            wake_r,
            wake_w,
        });
        Ok(ServiceManager {
            settings,
            shared,
            services: Vec::new(),
            hooks: Hooks::default(),
            fork: Box::new(plain_fork),
            on_wakeup: None,
            on_exit: None,
            lifecycle: Lifecycle::Ready,
            _seatbelt: seatbelt,
        })
    }

    /// A handle for hooks and other threads.
    pub fn handle(&self) -> ManagerHandle {
        ManagerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Adds a service of `workers` worker processes, started in the order
    /// services are added. `factory` runs in each new worker, after the
    /// fork, with the worker's id, and builds its [`Service`].
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings, Error};
    /// struct Idle;
    /// impl Service for Idle {}
    /// let mut settings = Settings::default();
    /// settings.single_instance = false;
    /// settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// let id = manager.add("idle", 4, |_| Ok(Idle)).unwrap();
    /// assert_eq!(manager.handle().workers(id), Some(4));
    /// let err = manager.add("none", 0, |_| Ok(Idle)).unwrap_err();
    /// assert_eq!(err.to_string(), "'workers' must be an int >= 1, not: 0 (int)");
    /// ```
    pub fn add<S, F>(
        &mut self,
        name: impl Into<String>,
        workers: usize,
        mut factory: F,
    ) -> Result<ServiceId, Error>
    where
        S: Service,
        F: FnMut(WorkerId) -> Result<S, ServiceExit> + Send + 'static,
    {
        if self.lifecycle != Lifecycle::Ready {
            return Err(Error::AlreadyRunning);
        }
        if workers < 1 {
            return Err(Error::InvalidWorkers {
                minimum: 1,
                given: workers as i64,
            });
        }
        let id = ServiceId(NEXT_SERVICE_ID.fetch_add(1, Ordering::Relaxed));
        self.services.push(ServiceEntry {
            id,
            name: name.into(),
            factory: Box::new(move |w| factory(w).map(|s| Box::new(s) as Box<dyn Service>)),
        });
        let mut c = self.shared.lock();
        c.counts.push((id, workers as i64));
        c.counts_changed = true;
        Ok(id)
    }

    /// Changes the number of workers of `service`, at the next supervision
    /// pass: missing workers are started, workers whose id is at or above
    /// the new count get SIGTERM. Resets the fork-rate limiter.
    ///
    /// `workers` may not be below `1 - current` ([`Error::InvalidWorkers`]);
    /// a count of 0 or less stops every worker of the service.
    pub fn reconfigure(&mut self, service: ServiceId, workers: i64) -> Result<(), Error> {
        self.handle().reconfigure(service, workers)
    }

    /// Starts a graceful shutdown (see [`ManagerHandle::shutdown`]).
    pub fn shutdown(&self) {
        self.handle().shutdown()
    }

    /// Adds a hook run in the master on SIGTERM, before the workers are
    /// stopped.
    pub fn on_terminate(&mut self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.adopt_added_hooks();
        self.hooks.terminate.push(Box::new(hook));
    }

    /// Adds a hook run in the master on SIGHUP, before the workers are told
    /// to reload.
    pub fn on_reload(&mut self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.adopt_added_hooks();
        self.hooks.reload.push(Box::new(hook));
    }

    /// Adds a hook run in each new worker, once its service is built and
    /// before `run()` starts.
    pub fn on_new_worker(
        &mut self,
        hook: impl FnMut(ServiceId, WorkerId, &dyn Service) -> HookResult + Send + 'static,
    ) {
        self.adopt_added_hooks();
        self.hooks.new_worker.push(Box::new(hook));
    }

    /// Adds a hook run in the master for each worker that ended while
    /// supervised, with its exit status (negative: killed by that signal),
    /// before the `Child <pid> exited ...` line.
    ///
    /// The hook may reap children of its own, even with `waitpid(-1)`: a
    /// death that runs hooks makes the loop check that every other worker
    /// is still its child (a read of `/proc`, ~0.2 µs per worker).
    /// [`ManagerHandle::on_dead_worker`] adds one while `run()` runs (each
    /// `on_*` has its twin on [`ManagerHandle`]).
    pub fn on_dead_worker(
        &mut self,
        hook: impl FnMut(ServiceId, WorkerId, i32) -> HookResult + Send + 'static,
    ) {
        self.adopt_added_hooks();
        self.hooks.dead_worker.push(Box::new(hook));
    }

    /// Replaces the fork step. The default is a plain `fork()`.
    ///
    /// The engine calls it from its loop with every signal blocked, and in
    /// the child renews its self-pipe before unblocking them. A language
    /// runtime wraps the fork with its own bookkeeping here (the Python face
    /// calls `PyOS_BeforeFork` / `PyOS_AfterFork_*` around it). The step
    /// must return [`ForkOutcome::Child`] in the new process and never run
    /// the master's code there.
    pub fn set_fork(&mut self, fork: impl FnMut() -> io::Result<ForkOutcome> + Send + 'static) {
        self.fork = Box::new(fork);
    }

    /// Sets a callback run when the master's loop starts, then each time the
    /// master's or a worker's loop wakes up for something else than the
    /// engine's own signals (a byte written to [`wakeup_fd`](Self::wakeup_fd)
    /// by someone else, e.g. CPython's signal handler). A byte that is the
    /// number of SIGTERM, SIGINT, SIGHUP or SIGCHLD, written while the
    /// engine's handler for that signal is installed, is the echo of a
    /// handler the engine chained (it was installed before `run()`), not
    /// news. Returning `Some(code)` stops: a worker exits with `code`; the
    /// master stops its workers and `run()` returns
    /// [`Error::Interrupted`]. (The Python face runs the application's own
    /// signal handlers there.)
    pub fn set_on_wakeup(&mut self, f: impl FnMut() -> Option<i32> + Send + 'static) {
        self.on_wakeup = Some(Box::new(f));
    }

    /// Sets a callback run just before the engine ends a process with
    /// `_exit` (a worker always; the master on SIGINT or timeout), to flush
    /// buffered output.
    pub fn set_on_exit(&mut self, f: impl Fn(i32) + Send + Sync + 'static) {
        self.on_exit = Some(Arc::new(f));
    }

    /// The write end of the self-pipe the loop waits on. Writing a byte
    /// wakes it; the Python face hands it to `signal.set_wakeup_fd`.
    pub fn wakeup_fd(&self) -> RawFd {
        self.shared.wake_w.as_raw_fd()
    }

    /// Starts the workers and supervises them until a graceful shutdown
    /// (SIGTERM or [`shutdown`](Self::shutdown)), then returns `Ok(())`.
    ///
    /// SIGINT, and a graceful shutdown that exceeds its timeout, end the
    /// process with status 1 from inside `run()`. Runs once per manager.
    pub fn run(&mut self) -> Result<(), Error> {
        if self.lifecycle != Lifecycle::Ready {
            return Err(Error::AlreadyRunning);
        }
        self.lifecycle = Lifecycle::Running;
        let result = self.run_loop();
        self.lifecycle = Lifecycle::Done;
        result
    }

    fn run_loop(&mut self) -> Result<(), Error> {
        worker::set_exit_hook(self.on_exit.clone());
        let signals = SignalFlags::register(self.shared.wake_w.as_raw_fd())?;
        let (death_r, death_w) = sys::cloexec_pipe()?;
        if self.settings.notify_systemd {
            notify::ready_once();
        }
        let mut lp = Loop {
            sup: Supervisor::new(),
            signals,
            death_r,
            death_w,
            master: getpid(),
            stopping: None,
            interrupted: false,
            statuses_taken: false,
            app_ran: false,
        };
        let mut first_wakeup = true;
        loop {
            // As in workers: the callback (the Python face's entry into the
            // interpreter) when someone else wrote to the pipe, and once at
            // the start; a worker's death then costs no interpreter round
            // trip before the respawn.
            let foreign = sys::drain(self.shared.wake_r.as_raw_fd(), |b| lp.signals.echoes(b));
            let wake_hook = std::mem::take(&mut first_wakeup) || foreign;
            if let Some(hook) = self.on_wakeup.as_mut().filter(|_| wake_hook) {
                lp.app_ran = true;
                if hook().is_some() && lp.stopping.is_none() {
                    lp.interrupted = true;
                    self.stop_workers(&mut lp);
                }
            }
            if lp.signals.take(Sig::Int) {
                self.fast_exit(&mut lp, "Caught SIGINT signal, instantaneous exiting");
            }
            if lp.signals.take(Sig::Chld) {
                self.reap(&mut lp);
            }
            let control_shutdown = std::mem::take(&mut self.shared.lock().shutdown);
            if (lp.signals.take(Sig::Term) || control_shutdown) && lp.stopping.is_none() {
                log::info!(target: MANAGER, "Caught SIGTERM signal, graceful exiting of master process");
                self.begin_shutdown(&mut lp);
            }
            let mut timeout: Option<Instant> = None;
            if let Some(deadline) = lp.stopping.as_ref().and_then(|s| s.deadline) {
                if Instant::now() >= deadline {
                    self.fast_exit(
                        &mut lp,
                        "Graceful shutdown timeout exceeded, instantaneous exiting of master process",
                    );
                }
                timeout = Some(deadline);
            }
            if lp.stopping.is_some() {
                // No reload while stopping.
                lp.signals.take(Sig::Hup);
                if lp.sup.running_count() == 0 {
                    // What the workers left behind (their own children)
                    // goes with them: the rest of our process group gets
                    // SIGTERM too, when we lead it.
                    if getpgrp() == lp.master && killpg(lp.master, Signal::SIGTERM).is_ok() {
                        // That SIGTERM reaches us too, maybe on another
                        // thread and later: see it handled while our
                        // handler is still installed, or it would end the
                        // process once run() restores the default action.
                        let deadline = Instant::now() + SELF_SIGNAL_WAIT;
                        while !lp.signals.take(Sig::Term) && Instant::now() < deadline {
                            wait_for_wakeup(&self.shared.wake_r, Some(deadline));
                            sys::drain(self.shared.wake_r.as_raw_fd(), |_| true);
                        }
                    }
                    log::debug!(target: MANAGER, "Shutdown finish");
                    return if lp.interrupted {
                        Err(Error::Interrupted)
                    } else {
                        Ok(())
                    };
                }
            } else {
                if lp.signals.take(Sig::Hup) {
                    self.reload(&mut lp);
                }
                timeout = self.supervise(&mut lp);
            }
            if lp.signals.any_pending() {
                continue;
            }
            wait_for_wakeup(&self.shared.wake_r, timeout);
        }
    }

    /// Applies the handles' changes, then forks and stops workers as the
    /// supervisor says, until it has to wait. Returns when to wake up.
    fn supervise(&mut self, lp: &mut Loop) -> Option<Instant> {
        {
            let mut c = self.shared.lock();
            if std::mem::take(&mut c.counts_changed) {
                for (id, n) in &c.counts {
                    lp.sup.set_workers(*id, *n);
                }
            }
            if std::mem::take(&mut c.reset_limiter) {
                lp.sup.reset_limiter();
            }
        }
        loop {
            if lp.signals.any_pending() {
                return Some(Instant::now());
            }
            match lp
                .sup
                .next_step(Instant::now(), self.settings.wait_interval)
            {
                Step::Stop(pids) => {
                    for pid in pids {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                }
                Step::Fork { service, worker } => self.spawn(lp, service, worker),
                Step::Wait { until, too_fast } => {
                    if too_fast {
                        log::info!(target: MANAGER, "Forking too fast, sleeping");
                    }
                    return Some(until);
                }
                Step::Idle => return None,
            }
        }
    }

    /// Forks worker `worker` of `service`.
    fn spawn(&mut self, lp: &mut Loop, service: ServiceId, worker: WorkerId) {
        // The new worker runs the new-worker hooks added so far.
        self.adopt_added_hooks();
        let default_timeout = self.shared.lock().graceful_shutdown_timeout;
        let mask = sys::block_all_signals();
        lp.sup.fork_attempted(Instant::now());
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.fork)()))
            .unwrap_or_else(|p| Err(io::Error::other(panic_message(&*p))));
        match outcome {
            Ok(ForkOutcome::Child) => {
                // In the new worker: a self-pipe of its own and no signal
                // seen yet, before any signal can be delivered.
                let renewed = sys::renew_pipe_in_place(
                    self.shared.wake_r.as_raw_fd(),
                    self.shared.wake_w.as_raw_fd(),
                );
                lp.signals.clear();
                sys::restore_signal_mask(&mask);
                if let Err(e) = renewed {
                    log::error!(target: MANAGER, "Worker set-up failed: {e}");
                    worker::exit(1);
                }
                let entry = self
                    .services
                    .iter_mut()
                    .find(|s| s.id == service)
                    .expect("the supervisor only forks known services");
                worker::run(WorkerContext {
                    service_id: service,
                    worker_id: worker,
                    name: &entry.name,
                    factory: &mut entry.factory,
                    new_worker_hooks: &mut self.hooks.new_worker,
                    default_timeout,
                    master: lp.master,
                    death_r: lp.death_r.as_fd(),
                    death_w: lp.death_w.as_raw_fd(),
                    wake_r: self.shared.wake_r.as_fd(),
                    signals: &lp.signals,
                    on_wakeup: self.on_wakeup.as_mut(),
                    titles: self.settings.titles,
                })
            }
            Ok(ForkOutcome::Parent(pid)) => {
                sys::restore_signal_mask(&mask);
                lp.sup.forked(service, worker, pid);
            }
            Err(e) => {
                sys::restore_signal_mask(&mask);
                log::error!(target: MANAGER, "Failed to fork worker {worker}: {e}");
            }
        }
    }

    /// Takes the hooks added through handles, after those already held.
    fn adopt_added_hooks(&mut self) {
        let added = std::mem::take(&mut self.shared.lock().added);
        self.hooks.append(added);
    }

    /// Collects every ended worker; while supervising, runs the dead-worker
    /// hooks and logs each.
    ///
    /// The common case costs O(1) per dead worker: `waitid(WNOWAIT)` names
    /// an ended child without reaping it, and it is reaped by pid if it is
    /// ours. A worker whose status the application took (a thread's or a
    /// hook's `waitpid(-1)`) is found missing from the kernel's list of
    /// this thread's children, and counted as gone. That list is read
    /// unless nobody else can have reaped: it is skipped only when this
    /// SIGCHLD brought a worker of ours, no theft was ever seen, we are not
    /// stopping, the process has no other thread, and no application code
    /// (hooks, the wake-up callback) ran on this one since the last read.
    /// When an ended child of the application's own (which only it may
    /// reap) stands first, every worker is asked about by pid.
    fn reap(&mut self, lp: &mut Loop) {
        self.adopt_added_hooks();
        // Whether ended workers may hide behind a child that is not ours.
        let mut hidden = false;
        let mut reaped = 0usize;
        loop {
            let peek = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(st) => match st.pid() {
                    Some(pid) => pid.as_raw(),
                    None => break,
                },
                Err(_) => break,
            };
            if !lp.sup.contains(pid) || !self.reap_one(lp, pid) {
                hidden = true;
                break;
            }
            reaped += 1;
        }
        // The children list costs ~0.2 us per child: read it only when a
        // status may have been taken. A theft in the same wake as one of
        // our deaths would otherwise go unseen until some later SIGCHLD.
        if !hidden
            && reaped > 0
            && !lp.statuses_taken
            && lp.stopping.is_none()
            && !lp.app_ran
            && sys::thread_count() == Some(1)
        {
            return;
        }
        lp.app_ran = false;
        let children = if hidden {
            None
        } else {
            sys::children_of_this_thread()
        };
        let suspects: Vec<i32> = match children {
            Some(children) => lp
                .sup
                .pids()
                .filter(|p| children.binary_search(p).is_err())
                .collect(),
            // Ask about every worker.
            None => lp.sup.pids().collect(),
        };
        for pid in suspects {
            self.reap_one(lp, pid);
        }
    }

    /// Reaps worker `pid` if it ended; returns whether it did.
    fn reap_one(&mut self, lp: &mut Loop, pid: i32) -> bool {
        let code = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => -(sig as i32),
            // Someone else (an application thread's waitpid(-1)) took
            // its status: it is gone all the same.
            Err(Errno::ECHILD) => {
                lp.statuses_taken = true;
                LOST_STATUS
            }
            _ => return false,
        };
        let Some(w) = lp.sup.exited(pid) else {
            return false;
        };
        if lp.stopping.is_none() {
            lp.app_ran |= !self.hooks.dead_worker.is_empty();
            run_each("dead_worker", &mut self.hooks.dead_worker, |h| {
                h(w.service, w.worker, code)
            });
            if code < 0 {
                log::info!(target: MANAGER, "Child {pid} killed by signal {}", signal_name(-code));
            } else {
                log::info!(target: MANAGER, "Child {pid} exited with status {code}");
            }
        }
        true
    }

    fn reload(&mut self, lp: &mut Loop) {
        self.adopt_added_hooks();
        lp.app_ran |= !self.hooks.reload.is_empty();
        run_each("reload", &mut self.hooks.reload, |h| h());
        lp.sup.reset_limiter();
        for pid in lp.sup.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
        }
    }

    fn begin_shutdown(&mut self, lp: &mut Loop) {
        self.adopt_added_hooks();
        let timeout = self.shared.lock().graceful_shutdown_timeout;
        lp.stopping = Some(Stopping {
            deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
        });
        run_each("terminate", &mut self.hooks.terminate, |h| h());
        log::debug!(target: MANAGER, "Killing services with signal SIGTERM");
        for pid in lp.sup.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        log::debug!(target: MANAGER, "Waiting services to terminate");
    }

    /// Stops the workers without the shutdown's hooks and log lines (the
    /// wakeup callback asked to stop).
    fn stop_workers(&mut self, lp: &mut Loop) {
        let timeout = self.shared.lock().graceful_shutdown_timeout;
        lp.stopping = Some(Stopping {
            deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
        });
        for pid in lp.sup.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// SIGINT to every worker (to the whole process group when the master
    /// leads it), a short wait for them, then `_exit(1)`.
    fn fast_exit(&mut self, lp: &mut Loop, reason: &str) -> ! {
        log::info!(target: MANAGER, "{reason}");
        if getpgrp() == lp.master {
            let _ = killpg(lp.master, Signal::SIGINT);
        } else {
            for pid in lp.sup.pids() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            }
        }
        // Workers leave at once on SIGINT: give them a moment to be reaped,
        // so they end by SIGINT rather than by noticing our death.
        let deadline = Instant::now() + FAST_EXIT_GRACE;
        lp.stopping.get_or_insert(Stopping { deadline: None });
        while lp.sup.running_count() > 0 && Instant::now() < deadline {
            self.reap(lp);
            if lp.sup.running_count() == 0 {
                break;
            }
            wait_for_wakeup(
                &self.shared.wake_r,
                Some(deadline.min(Instant::now() + Duration::from_millis(5))),
            );
            sys::drain(self.shared.wake_r.as_raw_fd(), |_| true);
        }
        worker::exit(1)
    }
}

/// The exit status reported for a worker whose status another waiter took.
pub const LOST_STATUS: i32 = 255;

/// How long the master waits to see its own group SIGTERM arrive.
const SELF_SIGNAL_WAIT: Duration = Duration::from_secs(1);

/// How long the master waits for its workers after SIGINT before it exits.
const FAST_EXIT_GRACE: Duration = Duration::from_millis(500);

struct Stopping {
    deadline: Option<Instant>,
}

/// The state of one `run()`.
struct Loop {
    sup: Supervisor,
    signals: SignalFlags,
    death_r: OwnedFd,
    death_w: OwnedFd,
    master: Pid,
    stopping: Option<Stopping>,
    interrupted: bool,
    /// The application took a worker's exit status at least once.
    statuses_taken: bool,
    /// Application code ran on the loop's thread (and so may have reaped
    /// a worker) since the children list was last read.
    app_ran: bool,
}

fn plain_fork() -> io::Result<ForkOutcome> {
    match sys::fork_raw()? {
        sys::Forked::Parent(pid) => Ok(ForkOutcome::Parent(pid.as_raw())),
        sys::Forked::Child => Ok(ForkOutcome::Child),
    }
}

/// Waits until the self-pipe is readable or `until` passes.
fn wait_for_wakeup(wake_r: &OwnedFd, until: Option<Instant>) {
    let timeout = match until {
        None => PollTimeout::NONE,
        Some(t) => {
            let left = t.saturating_duration_since(Instant::now());
            // Round up so we never wake just before the deadline.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = [PollFd::new(wake_r.as_fd(), PollFlags::POLLIN)];
    let _ = nix::poll::poll(&mut fds, timeout);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn quiet_manager() -> ServiceManager {
        let settings = Settings {
            single_instance: false,
            session_leader: false,
            titles: crate::TitleMode::Off,
            notify_systemd: false,
            ..Settings::default()
        };
        ServiceManager::with_settings(settings).expect("manager")
    }

    #[test]
    fn hooks_keep_their_order_across_manager_and_handles() {
        let order = Arc::new(StdMutex::new(Vec::new()));
        let hook = |tag: &'static str| {
            let order = Arc::clone(&order);
            move || -> HookResult {
                order.lock().unwrap().push(tag);
                Ok(())
            }
        };
        let mut m = quiet_manager();
        let h = m.handle();
        m.on_reload(hook("manager 1"));
        h.on_reload(hook("handle 1"));
        m.on_reload(hook("manager 2"));
        h.on_reload(hook("handle 2"));
        h.on_terminate(hook("terminate"));
        // What the loop does before running the reload hooks.
        m.adopt_added_hooks();
        run_each("reload", &mut m.hooks.reload, |f| f());
        assert_eq!(
            *order.lock().unwrap(),
            ["manager 1", "handle 1", "manager 2", "handle 2"]
        );
        assert_eq!(m.hooks.terminate.len(), 1, "each kind to its own list");
        assert!(m.shared.lock().added.reload.is_empty(), "taken once");
    }
}
