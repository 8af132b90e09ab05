//! The master process: the public [`ServiceManager`] (the builder and
//! `run()`), its [`ManagerHandle`], the pure state machine that holds every
//! rule of the contract (`machine.rs`) and the single-threaded loop that
//! feeds it events and performs its actions (`run_loop.rs`).

mod commands;
mod exec;
mod handle;
pub(crate) mod machine;
mod run_loop;
mod settings;
mod view;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use exec::WorkerHandover;
pub use handle::ManagerHandle;
pub use settings::{Settings, CONTROL_SOCKET_ENV, METRICS_FILE_ENV};

use self::handle::Shared;
use self::machine::Machine;
use crate::hooks::{HookResult, Hooks};
use crate::title;
use crate::worker::{ExitFn, Factory, WakeFn};
use crate::{sys, AppError, Error, Service, ServiceId, ServicePolicy, WorkerId, WorkerIdentity};

/// What a fork returns: see [`bindings::set_fork_wrapper`](crate::bindings::set_fork_wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkOutcome {
    /// In the master: the new worker's pid.
    Parent(i32),
    /// In the new worker process.
    Child,
}

/// The engine's one fork, handed to a face's fork wrapper: call it once.
pub type ForkCall<'a> = &'a mut dyn FnMut() -> io::Result<ForkOutcome>;
type ForkWrapper = Box<dyn FnMut(ForkCall<'_>) -> io::Result<ForkOutcome> + Send>;

/// The exit status reported for a worker whose status another waiter took.
pub const LOST_STATUS: i32 = 255;

/// The most workers a service may have, in every face (`add`,
/// `reconfigure`, `scale`, the C API, the control socket). A count above
/// it is refused with [`Error::InvalidWorkers`], rather than making the
/// master try to fork more processes than a system can run.
///
/// ```
/// # use cotyledon::{Error, Service, ServiceManager, Settings, MAX_WORKERS};
/// # struct Idle;
/// # impl Service for Idle {}
/// # let mut settings = Settings::default();
/// # settings.single_instance = false;
/// # settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings).unwrap();
/// let err = manager.add("web", i64::MAX, |_| Ok(Idle)).unwrap_err();
/// assert!(matches!(err, Error::InvalidWorkers { .. }));
/// assert_eq!(
///     err.to_string(),
///     format!("invalid worker count {}: the maximum is {MAX_WORKERS}", i64::MAX)
/// );
/// ```
pub const MAX_WORKERS: i64 = 10_000;

/// `workers` is a count from `minimum` to [`MAX_WORKERS`].
pub(crate) fn check_count(minimum: i64, workers: i64) -> Result<(), Error> {
    if (minimum..=MAX_WORKERS).contains(&workers) {
        Ok(())
    } else {
        Err(Error::InvalidWorkers {
            minimum,
            maximum: MAX_WORKERS,
            given: workers,
        })
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

/// The loop side of a service: what builds its workers.
struct ServiceEntry {
    name: String,
    factory: Factory,
    /// Set: its workers run in a new program (see
    /// [`ServiceManager::set_exec`]).
    exec: Option<exec::ExecFn>,
}

/// Whether this process is in the foreground process group of its
/// controlling terminal (where Ctrl-C goes).
fn in_terminal_foreground() -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false; // no controlling terminal
    };
    sys::foreground_group(&tty) == Some(nix::unistd::getpgrp().as_raw())
}

/// Starts, supervises and stops the worker processes of one or more
/// services. One per process.
///
/// A program's `main` (not run here: [`run`](Self::run) supervises until
/// SIGTERM):
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
///     manager.add("hello", 2, |_me| Ok(Hello))?;
///     manager.run() // until SIGTERM; SIGINT exits the process with status 1
/// }
/// ```
///
/// A whole run, which this doctest's process does as the master: two
/// workers start, a thread asks for the graceful shutdown once both run,
/// and `run()` returns. (Each doctest is a process of its own; the workers
/// end with `_exit`, so they never return into the test harness.)
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use cotyledon::{Service, ServiceManager, Settings, TitleMode};
///
/// struct Hello;
/// impl Service for Hello {}
///
/// let mut settings = Settings::default();
/// settings.session_leader = false; // stay in the test runner's group
/// settings.titles = TitleMode::Off;
/// settings.notify_systemd = false;
/// let mut manager = ServiceManager::with_settings(settings)?;
/// manager.add("hello", 2, |_me| Ok(Hello))?;
/// let terminated = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&terminated);
/// manager.on_terminate(move || {
///     flag.store(true, Ordering::SeqCst); // runs in this process, the master
///     Ok(())
/// });
/// let handle = manager.handle();
/// let stopper = std::thread::spawn(move || {
///     let deadline = Instant::now() + Duration::from_secs(10);
///     while handle.status().services[0].running < 2 && Instant::now() < deadline {
///         std::thread::sleep(Duration::from_millis(5));
///     }
///     handle.shutdown(); // as SIGTERM
/// });
/// manager.run()?; // both workers stopped gracefully
/// stopper.join().unwrap();
/// assert!(terminated.load(Ordering::SeqCst));
/// # Ok::<(), cotyledon::Error>(())
/// ```
pub struct ServiceManager {
    settings: Settings,
    shared: Arc<Shared>,
    entries: HashMap<ServiceId, ServiceEntry>,
    hooks: Hooks,
    fork: ForkWrapper,
    on_wakeup: Option<WakeFn>,
    on_exit: Option<ExitFn>,
    ran: bool,
    init_pid: Option<i32>,
    _seatbelt: Option<Seatbelt>,
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
    ///
    /// When it runs as PID 1 (or [`Settings::init`] says so), it first
    /// splits off a minimal init that reaps orphans: the caller gets the
    /// manager in a new process, the master, and the original process stays
    /// behind as the init (see [`InitMode`](crate::InitMode)).
    pub fn with_settings(settings: Settings) -> Result<Self, Error> {
        Self::with_fork_wrapper(settings, |fork| fork())
    }

    /// See [`bindings::with_fork_wrapper`](crate::bindings::with_fork_wrapper).
    pub(crate) fn with_fork_wrapper(
        settings: Settings,
        wrapper: impl FnMut(ForkCall<'_>) -> io::Result<ForkOutcome> + Send + 'static,
    ) -> Result<Self, Error> {
        let mut fork: ForkWrapper = Box::new(wrapper);
        let seatbelt = if settings.single_instance {
            Some(Seatbelt::fasten()?)
        } else {
            None
        };
        // Before anything of the master exists: its pipe, title and session
        // are made in the master, which becomes a session leader (the init
        // keeps the caller's session and stays PID 1).
        let init_pid = crate::init::split(settings.init, settings.titles, &mut *fork)?;
        let (wake_r, wake_w) = sys::nonblocking_pipe()?;
        title::set(settings.titles, &title::master_title());
        if settings.session_leader && !(settings.keep_terminal && in_terminal_foreground()) {
            // Fails when already a process group leader: fine.
            let _ = nix::unistd::setsid();
        }
        let mut machine = Machine::new(settings.wait_interval, settings.graceful_shutdown_timeout);
        machine.set_kill_grace(settings.kill_grace);
        Ok(ServiceManager {
            settings,
            shared: Arc::new(Shared::new(machine, wake_r, wake_w)),
            entries: HashMap::new(),
            hooks: Hooks::default(),
            fork,
            on_wakeup: None,
            on_exit: None,
            ran: false,
            init_pid,
            _seatbelt: seatbelt,
        })
    }

    /// The pid of the init this manager split off at creation (the
    /// master's parent), or `None` when it did not split (see
    /// [`InitMode`](crate::InitMode)).
    pub fn init_pid(&self) -> Option<i32> {
        self.init_pid
    }

    /// A handle for hooks and other threads.
    pub fn handle(&self) -> ManagerHandle {
        ManagerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Adds a service named `name` of `workers` worker processes, started
    /// in the order services are added. `factory` runs in each new worker,
    /// after the fork, with the worker's [`WorkerIdentity`] (service id and
    /// name, worker id), and builds its [`Service`]; an error it returns
    /// ends the worker as one from [`Service::run`] does. Build what does
    /// not survive a fork there (threads, an async runtime: see
    /// [`Service`]).
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings, Error, WorkerIdentity};
    /// struct Idle { worker: usize }
    /// impl Service for Idle {}
    /// let mut settings = Settings::default();
    /// settings.single_instance = false;
    /// settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// let id = manager
    ///     .add("idle", 4, |me: &WorkerIdentity| Ok(Idle { worker: me.worker_id }))
    ///     .unwrap();
    /// assert_eq!(manager.handle().workers(id), Some(4));
    /// assert_eq!(manager.handle().service_name(id).as_deref(), Some("idle"));
    /// let err = manager.add("none", 0, |_| Ok(Idle { worker: 0 })).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid worker count 0: the minimum is 1");
    /// let err = manager.add("idle", 1, |_| Ok(Idle { worker: 0 })).unwrap_err();
    /// assert!(matches!(err, Error::DuplicateServiceName(ref n) if n == "idle"));
    /// ```
    ///
    /// Errors: [`Error::InvalidWorkers`] (`workers` < 1 or >
    /// [`MAX_WORKERS`]), [`Error::EmptyServiceName`],
    /// [`Error::DuplicateServiceName`],
    /// [`Error::AlreadyRunning`].
    pub fn add<S, F>(
        &mut self,
        name: impl Into<String>,
        workers: i64,
        factory: F,
    ) -> Result<ServiceId, Error>
    where
        S: Service,
        F: FnMut(&WorkerIdentity) -> Result<S, AppError> + Send + 'static,
    {
        let name = self.check_name(name.into())?;
        self.add_service(name, None, workers, factory)
    }

    /// The name, if no service has it yet and it is not empty.
    fn check_name(&self, name: String) -> Result<String, Error> {
        if name.is_empty() {
            return Err(Error::EmptyServiceName);
        }
        if self.entries.values().any(|e| e.name == name) {
            return Err(Error::DuplicateServiceName(name));
        }
        Ok(name)
    }

    /// [`add`](Self::add), with a restart policy (see [`ServicePolicy`]):
    /// whether ended workers are respawned, their backoff, when to give up,
    /// whether the manager stops when the service has no worker left.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// use std::time::Duration;
    /// use cotyledon::{Backoff, GiveUp, Restart, ServicePolicy};
    /// # struct Job;
    /// # impl Service for Job {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// // Batch jobs: a clean exit is final; crashes are retried with a
    /// // backoff; 5 crashes in a minute stop the manager.
    /// let policy = ServicePolicy::default()
    ///     .restart(Restart::OnFailure)
    ///     .stop_on_exit(true)
    ///     .backoff(Backoff::new(Duration::from_millis(200), Duration::from_secs(10)))
    ///     .give_up(GiveUp::new(5, Duration::from_secs(60)));
    /// let jobs = manager.add_with_policy("jobs", 4, policy, |_| Ok(Job)).unwrap();
    /// assert_eq!(manager.handle().status().services[0].policy.restart, "on-failure");
    /// // run() then returns Err(Error::Stopped { status, .. }) when the
    /// // policy stops the manager with a nonzero status.
    /// # let _ = jobs;
    /// ```
    ///
    /// Errors as [`add`](Self::add), and [`Error::InvalidPolicy`].
    pub fn add_with_policy<S, F>(
        &mut self,
        name: impl Into<String>,
        workers: i64,
        policy: ServicePolicy,
        factory: F,
    ) -> Result<ServiceId, Error>
    where
        S: Service,
        F: FnMut(&WorkerIdentity) -> Result<S, AppError> + Send + 'static,
    {
        policy.check()?;
        let name = self.check_name(name.into())?;
        let id = self.add_service(name, None, workers, factory)?;
        self.set_policy(id, policy)?;
        Ok(id)
    }

    /// Sets the restart policy of `service`, added before (e.g. with
    /// [`add_with_key`](crate::bindings::add_with_key)); before [`run`](Self::run)
    /// only ([`Error::AlreadyRunning`] after).
    ///
    /// Errors: [`Error::UnknownService`], [`Error::InvalidPolicy`],
    /// [`Error::AlreadyRunning`].
    pub fn set_policy(&mut self, service: ServiceId, policy: ServicePolicy) -> Result<(), Error> {
        if self.ran {
            return Err(Error::AlreadyRunning);
        }
        policy.check()?;
        let mut core = self.shared.lock();
        if core.machine.workers_of(service).is_none() {
            return Err(Error::UnknownService(service));
        }
        core.machine.set_policy(service, policy);
        Ok(())
    }

    /// Adds a service (see [`add`](Self::add)), with the face's key if any.
    pub(crate) fn add_service<S, F>(
        &mut self,
        name: String,
        key: Option<String>,
        workers: i64,
        mut factory: F,
    ) -> Result<ServiceId, Error>
    where
        S: Service,
        F: FnMut(&WorkerIdentity) -> Result<S, AppError> + Send + 'static,
    {
        if self.ran {
            return Err(Error::AlreadyRunning);
        }
        check_count(1, workers)?;
        let id = ServiceId(NEXT_SERVICE_ID.fetch_add(1, Ordering::Relaxed));
        self.shared
            .lock()
            .machine
            .add_service(id, name.clone(), key, workers);
        self.entries.insert(
            id,
            ServiceEntry {
                name,
                factory: Box::new(move |me: &WorkerIdentity| {
                    factory(me).map(|s| Box::new(s) as Box<dyn Service>)
                }),
                exec: None,
            },
        );
        Ok(id)
    }

    /// Changes the number of workers of `service`, at the next supervision
    /// pass: missing workers are started, workers whose id is at or above
    /// the new count get SIGTERM. Resets the fork-rate limiter.
    ///
    /// `workers` may not be below `1 - current`, nor above
    /// [`MAX_WORKERS`] ([`Error::InvalidWorkers`]); a count of 0 or less
    /// stops every worker of the service. Called in a worker, it fails
    /// with [`Error::NotInMaster`].
    pub fn reconfigure(&mut self, service: ServiceId, workers: i64) -> Result<(), Error> {
        self.handle().reconfigure(service, workers)
    }

    /// Starts a graceful shutdown (see [`ManagerHandle::shutdown`]).
    ///
    /// Errors: [`Error::NotInMaster`] when called in a worker.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.handle().shutdown()
    }

    /// Adds a hook run in the master on SIGTERM (and
    /// [`shutdown`](Self::shutdown)), before the workers are stopped.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// manager.on_terminate(|| {
    ///     log::info!("draining the load balancer");
    ///     Ok(())
    /// });
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
    pub fn on_terminate(&mut self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.adopt_added_hooks();
        self.hooks.terminate.push(Box::new(hook));
    }

    /// Adds a hook run in the master on SIGHUP (and
    /// [`ManagerHandle::reload`]), before the workers are told to reload.
    ///
    /// A failing reload hook is logged, the event's remaining reload hooks
    /// are skipped, and the workers still get SIGHUP (the contract): to be
    /// able to stop a reload, use [`on_reload_check`](Self::on_reload_check).
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// let web = manager.add("web", 2, |_| Ok(Idle))?;
    /// let handle = manager.handle();
    /// manager.on_reload(move || {
    ///     // Re-read the configuration, then apply it.
    ///     let workers: i64 = std::env::var("WEB_WORKERS").unwrap_or("2".into()).parse()?;
    ///     handle.reconfigure(web, workers)?;
    ///     Ok(())
    /// });
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
    pub fn on_reload(&mut self, hook: impl FnMut() -> HookResult + Send + 'static) {
        self.adopt_added_hooks();
        self.hooks.reload.push(Box::new(hook));
    }

    /// Adds a reload check: a hook run in the master on SIGHUP (and
    /// [`ManagerHandle::reload`]) before the reload hooks, that can stop the
    /// reload. Checks run in the order added; the first that returns an
    /// error (or panics) stops the reload: the remaining checks and the
    /// reload hooks do not run, the workers get no SIGHUP, the fork-rate
    /// limiter is kept, and the master logs at ERROR
    /// `Reload refused by a reload check: <the error>`. When every check
    /// passes, the reload goes on as usual.
    ///
    /// Opt-in: a plain [`on_reload`](Self::on_reload) hook cannot stop a
    /// reload (the contract runs it anyway). A check may apply what it
    /// validated (e.g. [`ManagerHandle::reconfigure`]) before returning
    /// `Ok(())`.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// manager.add("web", 2, |_| Ok(Idle))?;
    /// manager.on_reload_check(|| {
    ///     let text = std::fs::read_to_string("/nonexistent/web.toml")
    ///         .map_err(|e| format!("cannot read /nonexistent/web.toml: {e}"))?;
    ///     if text.trim().is_empty() {
    ///         return Err("web.toml is empty".into());
    ///     }
    ///     Ok(())
    /// });
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
    pub fn on_reload_check(&mut self, check: impl FnMut() -> HookResult + Send + 'static) {
        self.adopt_added_hooks();
        self.hooks.reload_check.push(Box::new(check));
    }

    /// Adds a hook run in each new worker, once its service is built and
    /// before `run()` starts.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// manager.on_new_worker(|service, worker, _svc| {
    ///     // Runs in the worker: its identity is known there too.
    ///     let me = cotyledon::current_worker().expect("in a worker");
    ///     assert_eq!((me.service_id, me.worker_id), (service, worker));
    ///     log::info!("{} worker {worker} starting", me.service_name);
    ///     Ok(())
    /// });
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
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
    /// A worker that restarted itself (the default
    /// [`Service::reload`](crate::Service::reload), or
    /// [`restart_worker`](crate::restart_worker)) shows here as an ordinary
    /// exit, status 0; [`ManagerHandle::status`] read in the hook marks it
    /// [`restarted`](crate::status::WorkerStatus::restarted).
    ///
    /// The hook may reap children of its own, even with `waitpid(-1)`: a
    /// death that runs hooks makes the loop check that every other worker
    /// is still its child (a read of `/proc`, ~0.2 µs per worker).
    /// [`ManagerHandle::on_dead_worker`] adds one while `run()` runs (each
    /// `on_*` has its twin on [`ManagerHandle`]).
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// let handle = manager.handle();
    /// manager.on_dead_worker(move |service, worker, status| {
    ///     let name = handle.service_name(service).unwrap_or_default();
    ///     if status < 0 {
    ///         log::warn!("{name} worker {worker} killed by signal {}", -status);
    ///     }
    ///     Ok(())
    /// });
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
    pub fn on_dead_worker(
        &mut self,
        hook: impl FnMut(ServiceId, WorkerId, i32) -> HookResult + Send + 'static,
    ) {
        self.adopt_added_hooks();
        self.hooks.dead_worker.push(Box::new(hook));
    }

    /// See [`bindings::set_fork_wrapper`](crate::bindings::set_fork_wrapper).
    pub(crate) fn set_fork_wrapper(
        &mut self,
        wrapper: impl FnMut(ForkCall<'_>) -> io::Result<ForkOutcome> + Send + 'static,
    ) {
        self.fork = Box::new(wrapper);
    }

    /// See [`bindings::set_on_wakeup`](crate::bindings::set_on_wakeup).
    pub(crate) fn set_on_wakeup(&mut self, f: impl FnMut() -> Option<i32> + Send + 'static) {
        self.on_wakeup = Some(Box::new(f));
    }

    /// See [`bindings::set_on_exit`](crate::bindings::set_on_exit).
    pub(crate) fn set_on_exit(&mut self, f: impl Fn(i32) + Send + Sync + 'static) {
        self.on_exit = Some(Arc::new(f));
    }

    /// See [`bindings::wakeup_fd`](crate::bindings::wakeup_fd).
    pub(crate) fn wakeup_fd(&self) -> RawFd {
        self.shared.wake_w.as_raw_fd()
    }

    /// Starts the workers and supervises them until a graceful shutdown
    /// (SIGTERM or [`shutdown`](Self::shutdown)), then returns `Ok(())`.
    ///
    /// When a service's restart policy stops the manager (see
    /// [`ServicePolicy`]), the stop is as graceful and `run()` returns
    /// [`Error::Stopped`] with the exit status the program should end
    /// with (the give-up's [`GIVE_UP_STATUS`](crate::GIVE_UP_STATUS), or
    /// the last failure's), or `Ok(())` when that status is 0.
    ///
    /// SIGINT, and a graceful shutdown that exceeds its timeout, end the
    /// process with status 1 from inside `run()`. Runs once per manager.
    pub fn run(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.ran, true) {
            return Err(Error::AlreadyRunning);
        }
        run_loop::run(self)
    }

    /// Takes the hooks added through handles, after those already held.
    fn adopt_added_hooks(&mut self) {
        let added = std::mem::take(&mut self.shared.lock().added);
        self.hooks.append(added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::run_each;
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
        h.on_reload(hook("handle 1")).unwrap();
        m.on_reload(hook("manager 2"));
        h.on_reload(hook("handle 2")).unwrap();
        h.on_terminate(hook("terminate")).unwrap();
        // What the loop does before running the reload hooks.
        m.adopt_added_hooks();
        run_each("reload", "", &mut m.hooks.reload, |f| f());
        assert_eq!(
            *order.lock().unwrap(),
            ["manager 1", "handle 1", "manager 2", "handle 2"]
        );
        assert_eq!(m.hooks.terminate.len(), 1, "each kind to its own list");
        assert!(m.shared.lock().added.reload.is_empty(), "taken once");
    }
}
