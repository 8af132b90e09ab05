//! What the loop and the [`ManagerHandle`]s share: the state machine
//! behind a lock, the actions its steps produced for the loop to perform,
//! the hooks added through handles, and the self-pipe that wakes the loop.
//!
//! A handle steps the machine itself (so `reconfigure` is validated and
//! seen by `workers()` at once) and leaves the actions to the loop, which
//! alone forks, signals and runs hooks.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::machine::{Action, Command, Event, Machine, StopCause};
use crate::hooks::{HookResult, Hooks};
use crate::logging::MANAGER;
use crate::status::Status;
use crate::{sys, Error, Service, ServiceId, WorkerId};

pub(crate) struct Core {
    pub machine: Machine,
    /// Actions of steps made outside the loop, for the loop to perform.
    pub pending: Vec<Action>,
    /// Hooks added through a handle, for the loop to take before it next
    /// runs hooks or forks.
    pub added: Hooks,
    /// When the machine's clock (`Instant`) read `anchor.0`, the wall
    /// clock read `anchor.1`: status times are wall-clock times.
    pub anchor: (Instant, SystemTime),
}

// Aligned so that it never straddles two pages: the loop locks the
// mutex and steps the machine between two forks, and after each fork
// every page the master writes is copied for the new worker (one page
// copied per fork, not two).
#[repr(align(1024))]
pub(crate) struct Shared {
    core: Mutex<Core>,
    // The self-pipe: the signal handlers, handles and Python's wakeup fd
    // write to it; the loop polls it. Kept here so a handle never writes
    // to a closed fd.
    pub wake_r: OwnedFd,
    pub wake_w: OwnedFd,
    /// systemd was told `READY=1`.
    ready_told: AtomicBool,
    /// The master's pid: calls that change the manager are refused in
    /// any other process (a worker has a copy of the manager, which
    /// nothing reads).
    master_pid: i32,
    /// Calls made outside the master act on that process's copy and
    /// succeed, and `shutdown` is logged as SIGTERM, as in Cotyledon's
    /// Python reference (see [`bindings::reference_behaviour`](crate::bindings::reference_behaviour)).
    pub(crate) reference: AtomicBool,
}

impl Shared {
    pub(crate) fn new(machine: Machine, wake_r: OwnedFd, wake_w: OwnedFd) -> Self {
        Shared {
            core: Mutex::new(Core {
                machine,
                pending: Vec::new(),
                added: Hooks::default(),
                anchor: (Instant::now(), SystemTime::now()),
            }),
            wake_r,
            wake_w,
            ready_told: AtomicBool::new(false),
            master_pid: std::process::id() as i32,
            reference: AtomicBool::new(false),
        }
    }

    /// [`Error::NotInMaster`] when called outside the master process
    /// (unless the face asked for the reference's behaviour).
    pub(crate) fn check_master(&self) -> Result<(), Error> {
        let pid = std::process::id() as i32;
        if pid == self.master_pid || self.reference.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Error::NotInMaster {
                pid,
                master: self.master_pid,
            })
        }
    }

    pub(crate) fn told_ready(&self) {
        self.ready_told.store(true, Ordering::Release);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // Every change to Core is one step of the machine: a panic in
        // another thread cannot leave it half-changed.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake(&self) {
        sys::poke(self.wake_w.as_raw_fd());
    }

    /// Steps the machine from outside the loop, when `check` (what the
    /// caller must know first) passes; the loop performs the actions, and
    /// sees the machine's new timer, when it next wakes.
    fn feed_if<T, E>(
        &self,
        event: Event,
        check: impl FnOnce(&Machine) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut core = self.lock();
        let answer = check(&core.machine)?;
        let actions = core.machine.step(event, Instant::now());
        core.pending.extend(actions);
        drop(core);
        self.wake();
        Ok(answer)
    }

    /// Steps the machine from outside the loop, in the master only.
    fn feed(&self, event: Event) -> Result<(), Error> {
        self.check_master()?;
        self.feed_if(event, |_| Ok(()))
    }
}

/// A cheap, cloneable handle to a manager, for hooks and other threads:
/// reconfigure a service, read its status, reload, restart a worker,
/// change the shutdown timeout, add hooks (also while `run()` runs), or
/// shut down.
///
/// It works in the master process. A worker holds a copy of the manager
/// that supervises nothing: there, the calls that act on the manager
/// (`reconfigure`, `scale`, `reload`, `restart`, `reset_limiter`,
/// `set_graceful_shutdown_timeout`, `shutdown`, and the `on_*` calls that
/// add hooks) fail with [`Error::NotInMaster`] rather than do nothing; the
/// reads (`workers`, `status`, `service_name`) give the copy's values as of
/// the fork.
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
///     })?;
///     Ok(())
/// });
/// ```
#[derive(Clone)]
pub struct ManagerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ManagerHandle {
    /// Changes the number of workers of `service` (see
    /// [`ServiceManager::reconfigure`](crate::ServiceManager::reconfigure)).
    ///
    /// Errors: [`Error::UnknownService`], [`Error::InvalidWorkers`] (below
    /// `1 - current`, or above [`MAX_WORKERS`](crate::MAX_WORKERS)),
    /// [`Error::NotInMaster`] (called in a worker).
    pub fn reconfigure(&self, service: ServiceId, workers: i64) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared
            .feed_if(Event::Command(Command::Scale { service, workers }), |m| {
                m.check_scale(service, workers)
            })
    }

    /// Sets the number of workers of `service` to `workers`, from 0 to
    /// [`MAX_WORKERS`](crate::MAX_WORKERS), as the control socket's `scale`
    /// does: unlike [`reconfigure`](Self::reconfigure), the contract's
    /// `1 - current` floor does not apply, and 0 is allowed.
    ///
    /// ```
    /// # use cotyledon::{Error, Service, ServiceManager, Settings};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// let web = manager.add("web", 2, |_| Ok(Idle)).unwrap();
    /// let handle = manager.handle();
    /// handle.scale(web, 0).unwrap();
    /// assert_eq!(handle.workers(web), Some(0));
    /// let err = handle.scale(web, -1).unwrap_err();
    /// assert!(matches!(err, Error::InvalidWorkers { .. }));
    /// ```
    ///
    /// Errors: [`Error::UnknownService`], [`Error::InvalidWorkers`],
    /// [`Error::NotInMaster`].
    pub fn scale(&self, service: ServiceId, workers: i64) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared
            .feed_if(Event::Command(Command::Scale { service, workers }), |m| {
                m.workers_of(service)
                    .ok_or(Error::UnknownService(service))?;
                crate::master::check_count(0, workers)
            })
    }

    /// Forgets the fork history, so that the next forks wait only
    /// `wait_interval` (SIGHUP and reconfigure do the same).
    ///
    /// Errors: [`Error::NotInMaster`].
    pub fn reset_limiter(&self) -> Result<(), Error> {
        self.shared.feed(Event::Command(Command::ResetLimiter))
    }

    /// See [`bindings::service_of_key`](crate::bindings::service_of_key).
    pub(crate) fn service_of_key(&self, key: &str) -> Option<ServiceId> {
        self.shared.lock().machine.service_of_key(key)
    }

    /// See [`bindings::service_key`](crate::bindings::service_key).
    pub(crate) fn service_key(&self, service: ServiceId) -> Option<String> {
        self.shared
            .lock()
            .machine
            .key_of(service)
            .map(str::to_string)
    }

    /// The name `service` was added with; `None` for an id this manager did
    /// not give. For hooks, which get service ids.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings, ServiceId};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings)?;
    /// let web = manager.add("web", 2, |_| Ok(Idle))?;
    /// let handle = manager.handle();
    /// assert_eq!(handle.service_name(web).as_deref(), Some("web"));
    /// assert_eq!(handle.service_name(ServiceId::from(u64::MAX)), None);
    /// # Ok::<(), cotyledon::Error>(())
    /// ```
    pub fn service_name(&self, service: ServiceId) -> Option<String> {
        self.shared
            .lock()
            .machine
            .name_of(service)
            .map(str::to_string)
    }

    /// The number of workers `service` is configured with.
    pub fn workers(&self, service: ServiceId) -> Option<i64> {
        self.shared.lock().machine.workers_of(service)
    }

    /// Starts a graceful shutdown, as SIGTERM does, and returns at once.
    /// Logs `Manager shutdown requested`, then the master logs
    /// `Shutdown requested, graceful exiting of master process` (where
    /// SIGTERM logs `Caught SIGTERM signal, ...`). Harmless when the
    /// manager already stopped or is stopping.
    ///
    /// Errors: [`Error::NotInMaster`] when called in a worker (the worker's
    /// copy of the manager supervises nothing; a worker ends itself by
    /// returning from [`Service::run`](crate::Service::run), or restarts
    /// with [`restart_worker`](crate::restart_worker)).
    pub fn shutdown(&self) -> Result<(), Error> {
        self.shared.check_master()?;
        log::info!(target: MANAGER, "Manager shutdown requested");
        let cause = if self.shared.reference.load(Ordering::Relaxed) {
            StopCause::Sigterm
        } else {
            StopCause::Requested
        };
        self.shared.feed(Event::Command(Command::Stop(cause)))
    }

    /// Reloads, as SIGHUP does: the reload checks then the reload hooks
    /// run in the master, the fork-rate limiter is reset and every worker
    /// gets SIGHUP (unless a check refused: see
    /// [`ServiceManager::on_reload_check`](crate::ServiceManager::on_reload_check)).
    /// Ignored while stopping.
    ///
    /// Errors: [`Error::NotInMaster`].
    pub fn reload(&self) -> Result<(), Error> {
        self.shared.feed(Event::Command(Command::Reload))
    }

    /// Stops worker `worker` of `service` gracefully (SIGTERM); it is
    /// respawned with the same id. Returns whether such a worker runs (and
    /// is not already stopping).
    ///
    /// Errors: [`Error::NotInMaster`].
    pub fn restart(&self, service: ServiceId, worker: WorkerId) -> Result<bool, Error> {
        self.shared.check_master()?;
        Ok(self
            .shared
            .feed_if(Event::Command(Command::Restart { service, worker }), |m| {
                m.running_pid(service, worker).map(|_| ()).ok_or(())
            })
            .is_ok())
    }

    /// Changes the manager's graceful shutdown timeout (`ZERO` = forever);
    /// workers started afterwards use the new value.
    ///
    /// Errors: [`Error::NotInMaster`].
    pub fn set_graceful_shutdown_timeout(&self, timeout: Duration) -> Result<(), Error> {
        self.shared
            .feed(Event::Command(Command::SetGracefulTimeout(timeout)))
    }

    /// The manager's graceful shutdown timeout.
    pub fn graceful_shutdown_timeout(&self) -> Duration {
        self.shared.lock().machine.graceful_timeout()
    }

    /// See [`bindings::told_systemd_ready`](crate::bindings::told_systemd_ready).
    pub(crate) fn told_systemd_ready(&self) -> bool {
        self.shared.ready_told.load(Ordering::Acquire)
    }

    /// What the master is doing: its state, each service and worker, the
    /// limiter (see [`Status`]).
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// manager.add("web", 2, |_| Ok(Idle)).unwrap();
    /// let status = manager.handle().status();
    /// assert_eq!(status.services[0].name, "web");
    /// assert_eq!(status.services[0].workers, 2);
    /// assert_eq!(status.services[0].running, 0); // run() not called yet
    /// ```
    pub fn status(&self) -> Status {
        let core = self.shared.lock();
        super::view::status(&core.machine, core.anchor, Instant::now())
    }

    /// Adds a terminate hook (see
    /// [`ServiceManager::on_terminate`](crate::ServiceManager::on_terminate)),
    /// also while `run()` runs (from a hook or another thread). Like every
    /// hook added through a handle, it runs from the next such event on,
    /// after the hooks added before it.
    ///
    /// Errors: [`Error::NotInMaster`] (called in a worker, where it
    /// would never run).
    pub fn on_terminate(
        &self,
        hook: impl FnMut() -> HookResult + Send + 'static,
    ) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared.lock().added.terminate.push(Box::new(hook));
        Ok(())
    }

    /// Adds a reload hook (see
    /// [`ServiceManager::on_reload`](crate::ServiceManager::on_reload)),
    /// also while `run()` runs. A reload hook that adds one does not see it
    /// run on the same SIGHUP: it runs from the next one.
    ///
    /// Errors: [`Error::NotInMaster`] (called in a worker, where it
    /// would never run).
    pub fn on_reload(
        &self,
        hook: impl FnMut() -> HookResult + Send + 'static,
    ) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared.lock().added.reload.push(Box::new(hook));
        Ok(())
    }

    /// Adds a reload check, one that can stop a reload (see
    /// [`ServiceManager::on_reload_check`](crate::ServiceManager::on_reload_check)),
    /// also while `run()` runs: it runs from the next reload on.
    ///
    /// Errors: [`Error::NotInMaster`] (called in a worker, where it
    /// would never run).
    pub fn on_reload_check(
        &self,
        check: impl FnMut() -> HookResult + Send + 'static,
    ) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared.lock().added.reload_check.push(Box::new(check));
        Ok(())
    }

    /// Adds a new-worker hook (see
    /// [`ServiceManager::on_new_worker`](crate::ServiceManager::on_new_worker)),
    /// also while `run()` runs: workers forked from then on run it.
    ///
    /// Errors: [`Error::NotInMaster`] (called in a worker, where it
    /// would never run).
    pub fn on_new_worker(
        &self,
        hook: impl FnMut(ServiceId, WorkerId, &dyn Service) -> HookResult + Send + 'static,
    ) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared.lock().added.new_worker.push(Box::new(hook));
        Ok(())
    }

    /// Adds a dead-worker hook (see
    /// [`ServiceManager::on_dead_worker`](crate::ServiceManager::on_dead_worker)),
    /// also while `run()` runs: it is called from the next worker's death
    /// on.
    ///
    /// A hook is application code in the master's loop: a worker's death
    /// that has one makes the loop check all its workers, in case the hook
    /// reaped one of them itself.
    ///
    /// Errors: [`Error::NotInMaster`] (called in a worker, where it
    /// would never run).
    pub fn on_dead_worker(
        &self,
        hook: impl FnMut(ServiceId, WorkerId, i32) -> HookResult + Send + 'static,
    ) -> Result<(), Error> {
        self.shared.check_master()?;
        self.shared.lock().added.dead_worker.push(Box::new(hook));
        Ok(())
    }
}
