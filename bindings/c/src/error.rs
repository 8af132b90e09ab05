//! Result codes, the static text of each, and the thread-local last error.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// What every fallible function returns.
///
/// The numbers are stable: a code, once published, is never reused or
/// renumbered; retired codes stay listed as reserved.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cotyledon_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// A bug inside the library (a Rust panic) was caught at the boundary.
    Panic = 2,
    /// An argument is out of range or malformed (for example a name that is
    /// not UTF-8, or an unknown enum value).
    InvalidArgument = 3,
    /// The handle is not a live handle of this library (already freed, or
    /// never returned by a `_new` function).
    InvalidHandle = 4,
    /// A worker count out of range: `invalid worker count W: the minimum
    /// is N` (below 1 for `add`, below `1 - current` for `reconfigure`), or
    /// `invalid worker count W: the maximum is 10000` (above
    /// `COTYLEDON_MAX_WORKERS`).
    InvalidWorkers = 5,
    /// A second manager while one is alive (and the config asks for a
    /// single instance).
    AlreadyCreated = 6,
    /// A service id this manager did not give: `unknown service id <id>`.
    UnknownService = 7,
    /// The manager is running or has run: `run` runs once, and services and
    /// hooks are added before it.
    AlreadyRunning = 8,
    /// `run` was interrupted and the workers were stopped.
    Interrupted = 9,
    /// A system call failed; the last error message says which.
    Io = 10,
    /// An error this version of the C API does not know how to classify.
    Unknown = 11,
    /// The service has no running worker with that id (never started, or
    /// the id is at or above the worker count, or it is waiting for its
    /// respawn, or it is already stopping, or `run` is not executing):
    /// `service <id> has no running worker <worker> (or it is stopping)`.
    NoSuchWorker = 12,
    /// A service's restart policy stopped the manager (stop on exit after
    /// a failure, or a give-up): `run` returns this after the graceful
    /// stop; `cotyledon_manager_exit_status` gives the exit status the
    /// program should end with, and the last error message says why.
    Stopped = 13,
    /// A service name that is empty, or that a service added before has:
    /// `a service name must not be empty`, `a service named "web" was
    /// already added`.
    InvalidServiceName = 14,
    /// A manager function was called in another process than the master
    /// (a worker, or another child of the master), where the manager is a
    /// copy that supervises nothing: `manager calls work only in the master
    /// process (pid M), not in process P (a worker or another child of the
    /// master)`. A worker ends itself by returning from its `run`.
    NotInMaster = 15,
}

impl cotyledon_result {
    pub(crate) fn text(self) -> &'static CStr {
        match self {
            cotyledon_result::Ok => c"success",
            cotyledon_result::NullParameter => c"a required pointer argument was NULL",
            cotyledon_result::Panic => c"internal error (a panic was caught)",
            cotyledon_result::InvalidArgument => c"invalid argument",
            cotyledon_result::InvalidHandle => c"not a live handle",
            cotyledon_result::InvalidWorkers => c"invalid number of workers",
            cotyledon_result::AlreadyCreated => c"a service manager already exists",
            cotyledon_result::UnknownService => c"unknown service id",
            cotyledon_result::AlreadyRunning => c"the manager is running or has run",
            cotyledon_result::Interrupted => c"run was interrupted",
            cotyledon_result::Io => c"system call failed",
            cotyledon_result::Unknown => c"unknown error",
            cotyledon_result::NoSuchWorker => c"no such running worker",
            cotyledon_result::Stopped => c"stopped by a restart policy",
            cotyledon_result::InvalidServiceName => c"invalid service name",
            cotyledon_result::NotInMaster => c"called outside the master process",
        }
    }

    fn from_u32(code: u32) -> Option<Self> {
        use cotyledon_result::*;
        Some(match code {
            0 => Ok,
            1 => NullParameter,
            2 => Panic,
            3 => InvalidArgument,
            4 => InvalidHandle,
            5 => InvalidWorkers,
            6 => AlreadyCreated,
            7 => UnknownService,
            8 => AlreadyRunning,
            9 => Interrupted,
            10 => Io,
            11 => Unknown,
            12 => NoSuchWorker,
            13 => Stopped,
            14 => InvalidServiceName,
            15 => NotInMaster,
            _ => return None,
        })
    }
}

/// A failed call: its code and the detail for the last-error message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: cotyledon_result,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: cotyledon_result, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Failure::new(
            cotyledon_result::NullParameter,
            format!("'{what}' must not be NULL"),
        )
    }
}

impl From<cotyledon::Error> for Failure {
    fn from(e: cotyledon::Error) -> Self {
        use cotyledon::Error as E;
        let code = match &e {
            E::AlreadyCreated => cotyledon_result::AlreadyCreated,
            E::InvalidWorkers { .. } => cotyledon_result::InvalidWorkers,
            E::UnknownService(_) => cotyledon_result::UnknownService,
            E::EmptyServiceName | E::DuplicateServiceName(_) => {
                cotyledon_result::InvalidServiceName
            }
            E::AlreadyRunning => cotyledon_result::AlreadyRunning,
            E::Interrupted => cotyledon_result::Interrupted,
            E::Io(_) => cotyledon_result::Io,
            E::InvalidSetting(_) => cotyledon_result::InvalidArgument,
            E::InvalidPolicy(_) => cotyledon_result::InvalidArgument,
            E::Stopped { .. } => cotyledon_result::Stopped,
            E::NotInMaster { .. } => cotyledon_result::NotInMaster,
            _ => cotyledon_result::Unknown,
        };
        Failure::new(code, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The static text of a result code, e.g. `"invalid number of workers"`.
pub(crate) fn result_text(code: u32) -> *const c_char {
    match cotyledon_result::from_u32(code) {
        Some(r) => r.text().as_ptr(),
        None => c"unknown result code".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_text_and_numbers_are_stable() {
        for code in 0..=15 {
            let r = cotyledon_result::from_u32(code).unwrap();
            assert_eq!(r as u32, code);
            assert_ne!(r.text().to_bytes(), b"unknown result code");
        }
        assert_eq!(cotyledon_result::NoSuchWorker as u32, 12);
        assert_eq!(cotyledon_result::Stopped as u32, 13);
        assert_eq!(cotyledon_result::InvalidServiceName as u32, 14);
        assert_eq!(cotyledon_result::NotInMaster as u32, 15);
        assert!(cotyledon_result::from_u32(16).is_none());
        // SAFETY: static NUL-terminated strings.
        let text = |c| unsafe { CStr::from_ptr(result_text(c)) }.to_bytes();
        assert_eq!(text(12), b"no such running worker");
        assert_eq!(text(13), b"stopped by a restart policy");
        assert_eq!(text(14), b"invalid service name");
        assert_eq!(text(15), b"called outside the master process");
        assert_eq!(text(16), b"unknown result code");
    }
}
