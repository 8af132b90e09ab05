//! What a user implements: the [`Service`] that runs in each worker process.

use std::fmt;
use std::time::Duration;

/// The stable id of a worker within its service: with 3 workers they are
/// 0, 1 and 2, and a respawned worker gets the id of the one it replaces.
pub type WorkerId = usize;

/// The id [`ServiceManager::add`](crate::ServiceManager::add) gives a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub(crate) u64);

impl ServiceId {
    /// The id as a number, unique among the services of one manager.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Any integer names a service id; the manager says whether it knows it
/// ([`Error::UnknownService`](crate::Error::UnknownService) otherwise).
/// The C face passes ids as `uint64_t` this way.
impl From<u64> for ServiceId {
    fn from(id: u64) -> Self {
        ServiceId(id)
    }
}

impl From<ServiceId> for u64 {
    fn from(id: ServiceId) -> Self {
        id.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a service method asks its worker to end.
#[derive(Debug)]
pub enum ServiceExit {
    /// End the worker with this exit status (Python's `SystemExit(code)`).
    Code(i32),
    /// The method failed: the worker logs one line, `Service <name> worker
    /// <id>: run() failed: <error>` (or `factory`, `terminate()`,
    /// `reload()`), and exits with status 2.
    Failed(String),
}

impl ServiceExit {
    /// The exit status of the worker that ends this way.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceExit::Code(c) => *c,
            ServiceExit::Failed(_) => 2,
        }
    }
}

/// Any error converts into [`ServiceExit::Failed`], so service methods can
/// use `?`.
impl<E: std::error::Error> From<E> for ServiceExit {
    fn from(e: E) -> Self {
        ServiceExit::Failed(e.to_string())
    }
}

/// What a [`Service`] method returns: `Ok(())`, or how the worker must end.
pub type ServiceResult = Result<(), ServiceExit>;

/// A long-running service; one instance lives in each worker process.
///
/// The instance is built in the worker, after the fork, by the factory given
/// to [`ServiceManager::add`](crate::ServiceManager::add). Its methods are
/// called from different threads, possibly at the same time (`terminate`
/// while `run` is still going), hence `&self` and `Sync`: keep state in
/// atomics, mutexes or channels.
///
/// Every method is optional:
///
/// * [`run`](Service::run) runs in its own thread once the worker is ready.
///   Returning `Ok(())` does not end the worker: it keeps waiting for
///   signals. `Err(ServiceExit::Code(c))` ends it with status `c`; a failure
///   or a panic is logged and ends it with status 2.
/// * [`terminate`](Service::terminate) runs in a thread on SIGTERM; then the
///   worker exits 0 (or with the status it returns).
/// * [`reload`](Service::reload) runs in a thread on SIGHUP. The default
///   restarts the worker: it sends itself SIGTERM, so it terminates
///   gracefully and the manager starts a fresh one with the same id. A
///   SIGHUP that arrives while `terminate` runs is ignored; SIGHUPs that
///   arrive while `reload` runs make it run once more when it returns, so
///   the last one is always acted on.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use cotyledon::{Service, ServiceResult};
///
/// struct Ticker { stop: AtomicBool }
///
/// impl Service for Ticker {
///     fn run(&self) -> ServiceResult {
///         while !self.stop.load(Ordering::Relaxed) {
///             std::thread::sleep(Duration::from_millis(100));
///         }
///         Ok(())
///     }
///     fn terminate(&self) -> ServiceResult {
///         self.stop.store(true, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
pub trait Service: Send + Sync + 'static {
    /// The service's activity. Default: nothing (the worker just waits).
    fn run(&self) -> ServiceResult {
        Ok(())
    }

    /// Graceful stop, on SIGTERM. Default: nothing, so the worker exits 0.
    fn terminate(&self) -> ServiceResult {
        Ok(())
    }

    /// Reload, on SIGHUP. Default: restart this worker (see
    /// [`restart_worker`](crate::restart_worker)).
    fn reload(&self) -> ServiceResult {
        crate::restart_worker();
        Ok(())
    }

    /// How long `terminate` may take before the worker is ended with
    /// status 1. `None` (the default) uses the manager's setting;
    /// `Some(Duration::ZERO)` waits forever.
    fn graceful_shutdown_timeout(&self) -> Option<Duration> {
        None
    }
}

impl<S: Service + ?Sized> Service for Box<S> {
    fn run(&self) -> ServiceResult {
        (**self).run()
    }
    fn terminate(&self) -> ServiceResult {
        (**self).terminate()
    }
    fn reload(&self) -> ServiceResult {
        (**self).reload()
    }
    fn graceful_shutdown_timeout(&self) -> Option<Duration> {
        (**self).graceful_shutdown_timeout()
    }
}
