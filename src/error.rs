//! The errors of the public API, with the contract's messages.

use std::fmt;
use std::io;

use crate::ServiceId;

/// An error of the [`ServiceManager`](crate::ServiceManager) API.
///
/// `Display` gives a one-line message, e.g.
/// `workers must be at least 1, not 0`.
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
            Error::AlreadyCreated => {
                f.write_str("Only one instance of ServiceManager per application is allowed")
            }
            Error::InvalidWorkers {
                minimum,
                maximum,
                given,
            } => {
                if given < minimum {
                    write!(f, "workers must be at least {minimum}, not {given}")
                } else {
                    write!(f, "workers must be at most {maximum}, not {given}")
                }
            }
            Error::NotInMaster { pid, master } => write!(
                f,
                "manager calls work only in the master process (pid {master}), \
                 not in process {pid} (a worker or another child of the master)"
            ),
            Error::UnknownService(id) => write!(f, "{id} service id doesn't exists"),
            Error::AlreadyRunning => f.write_str("ServiceManager.run() was already called"),
            Error::Interrupted => f.write_str("ServiceManager.run() was interrupted"),
            Error::Io(e) => write!(f, "{e}"),
            Error::InvalidSetting(message) => f.write_str(message),
            Error::InvalidPolicy(why) => write!(f, "invalid restart policy: {why}"),
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
