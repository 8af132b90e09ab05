//! The errors of the public API. Their messages are the Rust and C faces'
//! own; the Python face formats Cotyledon's texts from the variants.

use std::fmt;
use std::io;

use crate::ServiceId;

/// An error of the [`ServiceManager`](crate::ServiceManager) API.
///
/// `Display` gives a message in Rust's idiom (lower case, no final
/// period), e.g. `invalid worker count 0: the minimum is 1`. The variants
/// carry the values, so a language binding formats its own text (the
/// Python face gives Cotyledon's `'workers' must be an int >= 1, not: 0
/// (int)`). It implements [`std::error::Error`], so `?` turns it into an
/// [`AppError`](crate::AppError) in a hook.
///
/// ```
/// use cotyledon::{Error, Service, ServiceManager, Settings};
/// struct Idle;
/// impl Service for Idle {}
/// let mut settings = Settings::default();
/// settings.single_instance = false;
/// settings.session_leader = false;
/// let mut manager = ServiceManager::with_settings(settings)?;
/// match manager.add("web", -5, |_| Ok(Idle)) {
///     Err(Error::InvalidWorkers { minimum, given, .. }) => {
///         assert_eq!((minimum, given), (1, -5));
///     }
///     other => panic!("{other:?}"),
/// }
/// let err = manager.add("", 1, |_| Ok(Idle)).unwrap_err();
/// assert_eq!(err.to_string(), "a service name must not be empty");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A second manager while one is alive in this process.
    AlreadyCreated,
    /// A worker count out of the allowed range: below `minimum` (1 for
    /// `add`, `1 - current` for `reconfigure`, 0 for `scale`), or above
    /// [`MAX_WORKERS`](crate::MAX_WORKERS).
    InvalidWorkers {
        /// The smallest count allowed here.
        minimum: i64,
        /// The largest count allowed ([`MAX_WORKERS`](crate::MAX_WORKERS)).
        maximum: i64,
        /// The count given.
        given: i64,
    },
    /// A call that acts on the manager ([`ManagerHandle::reconfigure`],
    /// `shutdown`, `reload`, `restart`, `scale`, ...) made in another
    /// process than the master: in a worker, the manager is a copy that
    /// supervises nothing, so the call would silently do nothing.
    ///
    /// [`ManagerHandle::reconfigure`]: crate::ManagerHandle::reconfigure
    NotInMaster {
        /// The calling process.
        pid: i32,
        /// The master's pid.
        master: i32,
    },
    /// A service id this manager did not give.
    UnknownService(ServiceId),
    /// [`ServiceManager::add`](crate::ServiceManager::add) (and
    /// `add_with_policy`) was given an empty service name.
    EmptyServiceName,
    /// [`ServiceManager::add`](crate::ServiceManager::add) (and
    /// `add_with_policy`) was given the name of a service added before:
    /// names identify services in logs, titles, the status and the control
    /// socket.
    DuplicateServiceName(String),
    /// `run()` was already called on this manager (it runs once), or
    /// `add()` came after it.
    AlreadyRunning,
    /// The wait was interrupted by the `on_wakeup` callback (the Python face
    /// uses it to propagate an exception raised by a signal handler); the
    /// workers were stopped.
    Interrupted,
    /// A system call failed.
    Io(io::Error),
    /// A setting's value, or the environment variable standing for it, is
    /// not one the engine knows (e.g. `COTYLEDON_INIT=sometimes`); the
    /// message names it and what is allowed.
    InvalidSetting(String),
    /// A restart policy that cannot be applied (see
    /// [`ServicePolicy::check`](crate::ServicePolicy::check)).
    InvalidPolicy(String),
    /// A [`WorkerHandover`](crate::WorkerHandover) that cannot be used: its
    /// text is not one the engine wrote, or what it names (the inherited
    /// fds, the one service) is not there. The message says which.
    InvalidWorkerHandover(String),
    /// A service's restart policy stopped the manager, gracefully:
    /// [`stop_on_exit`](crate::ServicePolicy::stop_on_exit) with a failure
    /// (`status` is that failure's exit status), or a
    /// [give-up](crate::GiveUp) (`status` is
    /// [`GIVE_UP_STATUS`](crate::GIVE_UP_STATUS)). `reason` says which
    /// service and why, as the log did. A policy stop whose status is 0
    /// (every worker of a `stop_on_exit` service finished cleanly) makes
    /// `run()` return `Ok(())`, as a graceful stop does.
    Stopped {
        /// The exit status the program should end with.
        status: i32,
        /// Why the manager stopped.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyCreated => f.write_str(
                "a service manager already exists in this process (one at a time, \
                 unless single_instance is off)",
            ),
            Error::InvalidWorkers {
                minimum,
                maximum,
                given,
            } => {
                if given < minimum {
                    write!(f, "invalid worker count {given}: the minimum is {minimum}")
                } else {
                    write!(f, "invalid worker count {given}: the maximum is {maximum}")
                }
            }
            Error::NotInMaster { pid, master } => write!(
                f,
                "manager calls work only in the master process (pid {master}), \
                 not in process {pid} (a worker or another child of the master)"
            ),
            Error::UnknownService(id) => write!(f, "unknown service id {id}"),
            Error::EmptyServiceName => f.write_str("a service name must not be empty"),
            Error::DuplicateServiceName(name) => {
                write!(f, "a service named {name:?} was already added")
            }
            Error::AlreadyRunning => {
                f.write_str("the manager is running or has run (run() runs once)")
            }
            Error::Interrupted => f.write_str("run() was interrupted"),
            Error::Io(e) => write!(f, "{e}"),
            Error::InvalidSetting(message) => f.write_str(message),
            Error::InvalidPolicy(why) => write!(f, "invalid restart policy: {why}"),
            Error::InvalidWorkerHandover(why) => write!(f, "invalid worker handover: {why}"),
            Error::Stopped { status, reason } => {
                write!(f, "the manager stopped with exit status {status}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(e.into())
    }
}
