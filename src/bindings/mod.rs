//! Plumbing for language bindings: what the C face (`bindings/c`) and the
//! Python face (`bindings/python`) need from the engine beyond the Rust
//! API.
//!
//! **Not for Rust applications.** A Rust program uses
//! [`ServiceManager`], [`ManagerHandle`] and [`Service`];
//! nothing here makes it better. These items exist because a binding
//! crate is a separate crate, so they cannot be crate-private: the fork
//! wrapper a language runtime needs around the engine's one fork, the
//! wake-up callback and fd an interpreter's signal handlers use, the
//! flush before `_exit`, the face's own service keys, the fork-rate
//! [`limiter`] as a pure function, and the switch to the Python
//! reference's behaviour where the Rust and C faces differ from it on
//! purpose. They may change with the bindings' needs.

#[path = "limiter.rs"]
pub mod limiter;

use std::io;
use std::os::fd::RawFd;

pub use crate::hooks::HookReported;
pub use crate::master::{ForkCall, ForkOutcome};
use crate::{
    AppError, Error, ManagerHandle, Service, ServiceId, ServiceManager, Settings, WorkerIdentity,
};

/// [`ServiceManager::with_settings`], with the face's fork wrapper (see
/// [`set_fork_wrapper`]) from the start: the split at creation, when
/// there is one, forks through it too. In that fork the [`ForkCall`]
/// returns only in the child (the master); in the parent it becomes the
/// init and never returns, so what the wrapper would do after the fork in
/// the parent never runs there.
///
/// ```
/// let mut settings = cotyledon::Settings::default();
/// settings.single_instance = false;
/// settings.session_leader = false;
/// let manager = cotyledon::bindings::with_fork_wrapper(settings, |fork| {
///     // a runtime's bookkeeping before the fork
///     let outcome = fork();
///     // ... and after it, in the parent and in the child
///     outcome
/// })
/// .unwrap();
/// # drop(manager);
/// ```
pub fn with_fork_wrapper(
    settings: Settings,
    wrapper: impl FnMut(ForkCall<'_>) -> io::Result<ForkOutcome> + Send + 'static,
) -> Result<ServiceManager, Error> {
    ServiceManager::with_fork_wrapper(settings, wrapper)
}

/// Wraps the engine's fork. The default calls it as it is.
///
/// The engine forks in one place, for every face: it calls the wrapper
/// from its loop with every signal blocked, and the wrapper calls the
/// [`ForkCall`] it is given exactly once and returns its outcome. A
/// language runtime does its own bookkeeping around it there (the Python
/// face holds the interpreter's lock and calls `PyOS_BeforeFork` /
/// `PyOS_AfterFork_*`; the C face flushes stdio). In the child the engine
/// then renews its self-pipe before it unblocks signals. The wrapper must
/// never run the master's code in the child.
pub fn set_fork_wrapper(
    manager: &mut ServiceManager,
    wrapper: impl FnMut(ForkCall<'_>) -> io::Result<ForkOutcome> + Send + 'static,
) {
    manager.set_fork_wrapper(wrapper)
}

/// Sets a callback run when the master's loop starts, then each time the
/// master's or a worker's loop wakes up for something else than the
/// engine's own signals (a byte written to [`wakeup_fd`] by someone else,
/// e.g. CPython's signal handler). A byte that is the number of SIGTERM,
/// SIGINT, SIGHUP or SIGCHLD, written while the engine's handler for that
/// signal is installed, is the echo of a handler the engine chained (it
/// was installed before `run()`), not news. Returning `Some(code)` stops:
/// a worker exits with `code`; the master stops its workers and `run()`
/// returns [`Error::Interrupted`]. (The Python face runs the application's
/// own signal handlers there.)
pub fn set_on_wakeup(
    manager: &mut ServiceManager,
    f: impl FnMut() -> Option<i32> + Send + 'static,
) {
    manager.set_on_wakeup(f)
}

/// Sets a callback run just before the engine ends a process with
/// `_exit` (a worker always; the master on SIGINT or timeout), to flush a
/// runtime's buffered output (the C face flushes stdio).
pub fn set_on_exit(manager: &mut ServiceManager, f: impl Fn(i32) + Send + Sync + 'static) {
    manager.set_on_exit(f)
}

/// The write end of the self-pipe the loop waits on. Writing a byte wakes
/// it; the Python face hands it to `signal.set_wakeup_fd`.
pub fn wakeup_fd(manager: &ServiceManager) -> RawFd {
    manager.wakeup_fd()
}

/// [`ServiceManager::add`], with the face's own id of the service: a
/// binding whose users know services by another id (the Python face's
/// `uuid.UUID`) keeps no table of its own; it finds the service with
/// [`service_of_key`], and the status carries the key.
///
/// Unlike `add`, it takes any name, empty or already used: the Python face
/// keeps Cotyledon's behaviour, which allows both.
///
/// ```
/// # use cotyledon::{Service, ServiceManager, Settings};
/// use cotyledon::bindings;
/// # struct Idle;
/// # impl Service for Idle {}
/// # let mut settings = Settings::default();
/// # settings.single_instance = false;
/// # settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings).unwrap();
/// let key = "5e0c8a8e-5c3d-4d7e-9a53-1f1b2f6f8c11";
/// let id = bindings::add_with_key(&mut manager, "api", 2, key, |_| Ok(Idle)).unwrap();
/// let handle = manager.handle();
/// assert_eq!(bindings::service_of_key(&handle, key), Some(id));
/// assert_eq!(bindings::service_key(&handle, id).as_deref(), Some(key));
/// ```
pub fn add_with_key<S, F>(
    manager: &mut ServiceManager,
    name: impl Into<String>,
    workers: i64,
    key: impl Into<String>,
    factory: F,
) -> Result<ServiceId, Error>
where
    S: Service,
    F: FnMut(&WorkerIdentity) -> Result<S, AppError> + Send + 'static,
{
    manager.add_service(name.into(), Some(key.into()), workers, factory)
}

/// The service added with this face key (see [`add_with_key`]).
pub fn service_of_key(handle: &ManagerHandle, key: &str) -> Option<ServiceId> {
    handle.service_of_key(key)
}

/// The face key `service` was added with, if any.
pub fn service_key(handle: &ManagerHandle, service: ServiceId) -> Option<String> {
    handle.service_key(service)
}

/// Whether systemd was told `READY=1` (the notify socket was set, the
/// setting on, and the datagram went). The Python face then removes
/// `NOTIFY_SOCKET` from `os.environ`, as Cotyledon does; the engine itself
/// never changes the master's environment (other threads may read it) and
/// strips systemd's variables in each new worker instead.
pub fn told_systemd_ready(handle: &ManagerHandle) -> bool {
    handle.told_systemd_ready()
}

/// Makes `manager` behave as Cotyledon's Python reference where the Rust
/// and C faces differ from it on purpose (the Python face calls it):
///
/// - a call that acts on the manager, made in a worker (or another child
///   of the master), acts on that process's copy and succeeds, instead of
///   failing with [`Error::NotInMaster`];
/// - [`ManagerHandle::shutdown`] makes the master log
///   `Caught SIGTERM signal, graceful exiting of master process` (the
///   reference's `shutdown()` sends SIGTERM to the master), instead of
///   `Shutdown requested, graceful exiting of master process`.
///
/// ```
/// # use cotyledon::{ServiceManager, Settings};
/// # let mut settings = Settings::default();
/// # settings.single_instance = false;
/// # settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings).unwrap();
/// cotyledon::bindings::reference_behaviour(&mut manager);
/// ```
pub fn reference_behaviour(manager: &mut ServiceManager) {
    manager
        .handle()
        .shared
        .reference
        .store(true, std::sync::atomic::Ordering::Relaxed);
}

/// `Ok(())` in the master process, [`Error::NotInMaster`] in any other
/// (a worker, or another child of the master): for a face's own calls
/// that must refuse to run outside the master (the C face's `add`, `run`
/// and hook registrations). Always `Ok(())` after
/// [`reference_behaviour`].
pub fn check_in_master(handle: &ManagerHandle) -> Result<(), Error> {
    handle.shared.check_master()
}
