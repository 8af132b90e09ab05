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

/// How a service method asks its worker to end, carried by an
/// [`AppError`].
///
/// ```
/// use cotyledon::{AppError, ServiceExit, ServiceResult};
///
/// fn run() -> ServiceResult {
///     // End the worker with status 3 (Python's `SystemExit(3)`).
///     Err(ServiceExit::Code(3))?
/// }
/// let e = run().unwrap_err();
/// assert_eq!(e.exit_code(), 3);
/// assert_eq!(e.to_string(), "exit with status 3");
/// assert_eq!(AppError::exit(3).exit_code(), 3); // the same, shorter
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for ServiceExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceExit::Code(c) => write!(f, "exit with status {c}"),
            ServiceExit::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ServiceExit {}

/// The one error type of application code: what [`Service`] methods, the
/// factory given to [`ServiceManager::add`](crate::ServiceManager::add)
/// and every hook return.
///
/// `?` converts into it whatever converts into
/// `Box<dyn Error + Send + Sync>`: [`std::io::Error`], any error type of
/// yours implementing [`std::error::Error`] (and `Send + Sync`), a boxed
/// error, a `String` or a `&str`. A [`ServiceExit`] converts too, and is
/// recovered from it ([`exit_code`](Self::exit_code)), which is how a
/// service method chooses its worker's exit status.
///
/// It does not implement [`std::error::Error`] itself (as `anyhow::Error`
/// does not): Rust's coherence rules forbid a type that converts from every
/// error to be one. [`into_boxed`](Self::into_boxed) gives the error as a
/// `Box<dyn Error + Send + Sync>`, and it derefs to `dyn Error`.
///
/// ```
/// use cotyledon::{AppError, HookResult, ServiceResult};
///
/// #[derive(Debug)]
/// struct BadConfig;
/// impl std::fmt::Display for BadConfig {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("bad configuration")
///     }
/// }
/// impl std::error::Error for BadConfig {}
///
/// fn read() -> ServiceResult {
///     std::fs::read("/nonexistent/cotyledon.toml")?; // std::io::Error
///     Ok(())
/// }
/// fn check(ok: bool) -> HookResult {
///     if !ok {
///         Err(BadConfig)?; // your own error type
///     }
///     Err("not yet")?; // a &str (a String works too)
///     Ok(())
/// }
/// assert_eq!(read().unwrap_err().exit_code(), 2); // a failure: status 2
/// let e = check(false).unwrap_err();
/// assert!(e.is::<BadConfig>());
/// assert_eq!(e.to_string(), "bad configuration");
/// assert_eq!(check(true).unwrap_err().to_string(), "not yet");
/// let boxed: Box<dyn std::error::Error + Send + Sync> = e.into_boxed();
/// assert!(boxed.is::<BadConfig>());
/// ```
pub struct AppError(Box<dyn std::error::Error + Send + Sync>);

impl AppError {
    /// Wraps an error (what `?` does).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AppError(error.into())
    }

    /// The error that ends the worker with exit status `code`
    /// ([`ServiceExit::Code`]).
    pub fn exit(code: i32) -> Self {
        AppError(Box::new(ServiceExit::Code(code)))
    }

    /// The exit status of a worker whose service method (or factory)
    /// returned this error: the [`ServiceExit`]'s status when it carries
    /// one, else 2 (a failure, logged).
    pub fn exit_code(&self) -> i32 {
        self.downcast_ref::<ServiceExit>()
            .map_or(2, ServiceExit::exit_code)
    }

    /// Whether the error is a `T`.
    pub fn is<T: std::error::Error + 'static>(&self) -> bool {
        self.0.is::<T>()
    }

    /// The error as a `T`, if it is one.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// The error as a `T`, or itself back when it is not one.
    pub fn downcast<T: std::error::Error + 'static>(self) -> Result<T, Self> {
        self.0.downcast::<T>().map(|b| *b).map_err(AppError)
    }

    /// The error, boxed, for code that wants a `std::error::Error`.
    pub fn into_boxed(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.0
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for AppError {
    fn from(error: E) -> Self {
        AppError(error.into())
    }
}

impl std::ops::Deref for AppError {
    type Target = dyn std::error::Error + Send + Sync;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl AsRef<dyn std::error::Error + Send + Sync> for AppError {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a [`Service`] method returns: `Ok(())`, or how the worker must end
/// (see [`AppError`]).
pub type ServiceResult = Result<(), AppError>;

/// Who a worker is: its service's id and name, and its worker id. The
/// factory given to [`ServiceManager::add`](crate::ServiceManager::add)
/// gets it, and [`current_worker`](crate::current_worker) gives it to any
/// code running in a worker process.
///
/// ```
/// use cotyledon::{Service, ServiceManager, Settings, WorkerIdentity};
///
/// struct Web { me: WorkerIdentity }
/// impl Service for Web {
///     fn run(&self) -> cotyledon::ServiceResult {
///         println!("{} worker {} up", self.me.service_name, self.me.worker_id);
///         Ok(())
///     }
/// }
/// # let mut settings = Settings::default();
/// # settings.single_instance = false;
/// # settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings)?;
/// manager.add("web", 2, |me: &WorkerIdentity| Ok(Web { me: me.clone() }))?;
/// # Ok::<(), cotyledon::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerIdentity {
    /// The id [`ServiceManager::add`](crate::ServiceManager::add) gave the
    /// service.
    pub service_id: ServiceId,
    /// The name the service was added with.
    pub service_name: String,
    /// The worker's id within its service (0 .. workers - 1).
    pub worker_id: WorkerId,
}

impl WorkerIdentity {
    pub(crate) fn new(service_id: ServiceId, service_name: &str, worker_id: WorkerId) -> Self {
        WorkerIdentity {
            service_id,
            service_name: service_name.to_string(),
            worker_id,
        }
    }
}

/// A long-running service; one instance lives in each worker process.
///
/// The instance is built in the worker, after the fork, by the factory given
/// to [`ServiceManager::add`](crate::ServiceManager::add), which gets the
/// worker's [`WorkerIdentity`]. Its methods are called from different
/// threads, possibly at the same time (`terminate` while `run` is still
/// going), hence `&self` and `Sync`: keep state in atomics, mutexes or
/// channels.
///
/// Every method is optional, and each returns a [`ServiceResult`] (`?`
/// works on any error, see [`AppError`]):
///
/// * [`run`](Service::run) runs in its own thread once the worker is ready.
///   Returning `Ok(())` does not end the worker: it keeps waiting for
///   signals. `Err(AppError::exit(c))` (or `Err(ServiceExit::Code(c))?`)
///   ends it with status `c`; any other error, or a panic, is logged and
///   ends it with status 2.
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
/// use cotyledon::{AppError, Service, ServiceResult};
///
/// struct Ticker { stop: AtomicBool }
///
/// impl Service for Ticker {
///     fn run(&self) -> ServiceResult {
///         let _config = std::fs::read_to_string("/etc/hostname")?; // io::Error
///         while !self.stop.load(Ordering::Relaxed) {
///             std::thread::sleep(Duration::from_millis(10));
///         }
///         Ok(())
///     }
///     fn terminate(&self) -> ServiceResult {
///         self.stop.store(true, Ordering::Relaxed);
///         Ok(())
///     }
///     fn reload(&self) -> ServiceResult {
///         Err(AppError::exit(75)) // end this worker with status 75
///     }
/// }
///
/// let t = Ticker { stop: AtomicBool::new(true) };
/// t.terminate().unwrap();
/// assert_eq!(t.reload().unwrap_err().exit_code(), 75);
/// ```
///
/// # Where to build an async runtime
///
/// In the factory, after the fork: never in the master before
/// [`run`](crate::ServiceManager::run). A runtime's threads do not survive a
/// fork (the child has only the forking thread, and locks other threads
/// held stay locked), so a runtime made in the master is unusable in
/// every worker. The factory runs in the new worker process; build the
/// runtime there, keep it in the service, and drive it from `run`:
///
/// ```
/// use std::sync::Mutex;
/// use cotyledon::{Service, ServiceResult, WorkerIdentity};
///
/// // Stands for e.g. `tokio::runtime::Runtime`, built in the factory with
/// // `tokio::runtime::Builder::new_multi_thread().enable_all().build()?`.
/// struct Runtime { name: String }
/// impl Runtime {
///     fn new(name: String) -> std::io::Result<Self> { Ok(Runtime { name }) }
///     fn block_on<T>(&self, f: impl FnOnce() -> T) -> T { f() }
/// }
///
/// struct Api { rt: Runtime, served: Mutex<u32> }
///
/// impl Service for Api {
///     fn run(&self) -> ServiceResult {
///         // The worker's run thread drives the runtime until terminate
///         // asks it to stop (e.g. through a shutdown channel).
///         self.rt.block_on(|| *self.served.lock().unwrap() += 1);
///         Ok(())
///     }
/// }
///
/// // The factory given to `ServiceManager::add`: it runs in the worker.
/// let factory = |me: &WorkerIdentity| -> Result<Api, cotyledon::AppError> {
///     let rt = Runtime::new(format!("{}-{}", me.service_name, me.worker_id))?;
///     Ok(Api { rt, served: Mutex::new(0) })
/// };
/// # let _ = factory;
/// # let api = Api { rt: Runtime::new("api-0".into()).unwrap(), served: Mutex::new(0) };
/// # api.run().unwrap();
/// # assert_eq!(*api.served.lock().unwrap(), 1);
/// # assert_eq!(api.rt.name, "api-0");
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
