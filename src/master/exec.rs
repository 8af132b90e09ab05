//! Workers that run in a new program: the engine forks them at its one
//! fork site, as every worker, and the child then `exec`s the program the
//! face chose (see [`ServiceManager::set_exec`]). The new program builds a
//! manager with the same service and enters the same worker protocol with
//! [`ServiceManager::run_worker`], given the [`WorkerHandover`] the engine
//! handed over. The master sees an ordinary child of its own.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::str::FromStr;
use std::time::Duration;

use nix::unistd::Pid;

use super::ServiceManager;
use crate::signals::SignalFlags;
use crate::worker::{self, WorkerContext};
use crate::{sys, Error, ServiceId, WorkerId};

/// Who a worker started in a new program is, and the fds it inherited
/// from the engine: what [`ServiceManager::run_worker`] needs to run it as
/// the master's worker.
///
/// The engine makes one in the forked child, just before it calls the
/// face's exec callback (see [`ServiceManager::set_exec`]); its text form
/// (`Display`, parsed back with `FromStr`) is what crosses the `exec`.
///
/// ```
/// use std::time::Duration;
/// use cotyledon::{ServiceId, WorkerHandover};
/// let id = WorkerHandover {
///     service: ServiceId::from(3),
///     worker: 1,
///     master: 4242,
///     death_fd: 5,
///     announce_fd: 8,
///     graceful_shutdown_timeout: Duration::from_millis(60_000),
/// };
/// let text = id.to_string();
/// assert_eq!(text, "cotyledon-worker:1:3:1:4242:5:8:60000");
/// assert_eq!(text.parse::<WorkerHandover>().unwrap(), id);
/// assert!("cotyledon-worker:1:3".parse::<WorkerHandover>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHandover {
    /// The service, as the master numbers it.
    pub service: ServiceId,
    /// The worker's id within its service.
    pub worker: WorkerId,
    /// The master's pid: a worker whose parent is another process is an
    /// orphan.
    pub master: i32,
    /// The read end of the parent-death pipe (end of file once the master
    /// is gone).
    pub death_fd: RawFd,
    /// The write end of the announcement pipe (see
    /// [`announce_restart`](crate::announce_restart)).
    pub announce_fd: RawFd,
    /// The manager's graceful shutdown timeout when the worker was forked,
    /// for a service that gives none of its own.
    pub graceful_shutdown_timeout: Duration,
}

/// The text form's tag and version.
const TAG: &str = "cotyledon-worker:1";

impl fmt::Display for WorkerHandover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG}:{}:{}:{}:{}:{}:{}",
            self.service.as_u64(),
            self.worker,
            self.master,
            self.death_fd,
            self.announce_fd,
            self.graceful_shutdown_timeout.as_millis()
        )
    }
}

impl FromStr for WorkerHandover {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidWorkerHandover(s.to_string());
        let rest = s
            .strip_prefix(TAG)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(bad)?;
        let fields: Vec<&str> = rest.split(':').collect();
        let [service, worker, master, death, announce, timeout] = fields[..] else {
            return Err(bad());
        };
        Ok(WorkerHandover {
            service: ServiceId::from(service.parse::<u64>().map_err(|_| bad())?),
            worker: worker.parse().map_err(|_| bad())?,
            master: master.parse().map_err(|_| bad())?,
            death_fd: death.parse().map_err(|_| bad())?,
            announce_fd: announce.parse().map_err(|_| bad())?,
            graceful_shutdown_timeout: Duration::from_millis(timeout.parse().map_err(|_| bad())?),
        })
    }
}

/// Called in the forked child in place of the service's factory: `exec`s
/// the new program, and returns only the error when it could not.
pub(crate) type ExecFn = Box<dyn FnMut(&WorkerHandover) -> std::io::Error + Send>;

/// In the forked child of a service started in a new program: keeps the
/// two fds across the coming `exec` and calls the face's callback. Returns
/// the error that stopped it; the caller ends the child.
pub(crate) fn exec_worker(exec: &mut ExecFn, identity: &WorkerHandover) -> std::io::Error {
    for fd in [identity.death_fd, identity.announce_fd] {
        if let Err(e) = sys::set_cloexec(fd, false) {
            return e;
        }
    }
    // As a forked worker: SIGTERM if the master dies (kept across exec).
    sys::set_parent_death_signal(libc::SIGTERM);
    exec(identity)
}

impl ServiceManager {
    /// Starts the workers of `service` in a new program: the engine forks
    /// each of them at its one fork site, as any worker, then calls `exec`
    /// in the child instead of the service's factory. `exec` replaces the
    /// process (`execv`) with a program that builds a manager with the
    /// same service and calls [`run_worker`](Self::run_worker) with the
    /// [`WorkerHandover`] it was given (its text form crosses the `exec`);
    /// it returns only the error when it could not, and the child then
    /// exits with status 1. The master reaps, respawns and counts these
    /// workers as any other.
    ///
    /// The child `exec`s with every signal blocked: signals that arrive
    /// before the new program's handlers are in wait, pending, until
    /// [`run_worker`](Self::run_worker) installs them.
    ///
    /// Errors: [`Error::UnknownService`], [`Error::AlreadyRunning`] after
    /// `run()`.
    ///
    /// ```
    /// # use cotyledon::{Service, ServiceManager, Settings, ServiceId};
    /// # struct Idle;
    /// # impl Service for Idle {}
    /// # let mut settings = Settings::default();
    /// # settings.single_instance = false;
    /// # settings.session_leader = false;
    /// let mut manager = ServiceManager::with_settings(settings).unwrap();
    /// let id = manager.add("idle", 2, |_| Ok(Idle)).unwrap();
    /// use std::os::unix::process::CommandExt;
    /// manager
    ///     .set_exec(id, |identity| {
    ///         std::process::Command::new("/usr/bin/my-worker")
    ///             .arg(identity.to_string())
    ///             .exec()
    ///     })
    ///     .unwrap();
    /// assert!(manager.set_exec(ServiceId::from(99), |_| unreachable!()).is_err());
    /// ```
    pub fn set_exec(
        &mut self,
        service: ServiceId,
        exec: impl FnMut(&WorkerHandover) -> std::io::Error + Send + 'static,
    ) -> Result<(), Error> {
        if self.ran {
            return Err(Error::AlreadyRunning);
        }
        let entry = self
            .entries
            .get_mut(&service)
            .ok_or(Error::UnknownService(service))?;
        entry.exec = Some(Box::new(exec));
        Ok(())
    }

    /// In a program a worker was `exec`ed into (see
    /// [`set_exec`](Self::set_exec)): runs this process as worker
    /// `identity.worker` of the master's service `identity.service`, with
    /// the same protocol as a forked worker (signals, `terminate()`,
    /// `reload()`, the new-worker hooks, the parent-death watch, the
    /// graceful shutdown timeout, the exit callback). The manager must hold
    /// exactly one service, added as in the master (its factory builds the
    /// service; its name names the worker). Never returns once the worker
    /// runs; returns the error that kept it from starting: an identity
    /// whose fds are not open, a manager without exactly one service, or
    /// one that ran already.
    pub fn run_worker(
        mut self,
        identity: &WorkerHandover,
    ) -> Result<std::convert::Infallible, Error> {
        if std::mem::replace(&mut self.ran, true) {
            return Err(Error::AlreadyRunning);
        }
        if self.entries.len() != 1 {
            return Err(Error::InvalidWorkerHandover(format!(
                "{identity}: the manager must hold exactly one service, it holds {}",
                self.entries.len()
            )));
        }
        let fd_error = |e: std::io::Error| {
            Error::InvalidWorkerHandover(format!("{identity}: an inherited fd: {e}"))
        };
        let death = sys::adopt_inherited_fd(identity.death_fd).map_err(fd_error)?;
        let announce = sys::adopt_inherited_fd(identity.announce_fd).map_err(fd_error)?;
        worker::set_exit_hook(self.on_exit.clone());
        self.adopt_added_hooks();
        let signals = SignalFlags::register(self.shared.wake_w.as_raw_fd())?;
        // The mask the engine held across the fork and exec: what arrived
        // meanwhile is delivered now, to the handlers just installed.
        sys::unblock_all_signals();
        let Some(entry) = self.entries.values_mut().next() else {
            unreachable!("checked above")
        };
        worker::run(WorkerContext {
            service_id: identity.service,
            worker_id: identity.worker,
            name: &entry.name,
            factory: &mut entry.factory,
            new_worker_hooks: &mut self.hooks.new_worker,
            default_timeout: identity.graceful_shutdown_timeout,
            master: Pid::from_raw(identity.master),
            death_r: death.as_fd(),
            death_w: -1,
            announce: (-1, announce.as_raw_fd()),
            wake_r: self.shared.wake_r.as_fd(),
            signals: &signals,
            on_wakeup: self.on_wakeup.as_mut(),
            titles: self.settings.titles,
        })
    }
}
