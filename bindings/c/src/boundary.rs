//! The unwind boundary every exported function goes through.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{cotyledon_result, set_last_error, Failure};

/// What an export returns when a panic was caught.
pub(crate) trait PanicDefault {
    fn panic_value() -> Self;
}

impl PanicDefault for cotyledon_result {
    fn panic_value() -> Self {
        cotyledon_result::Panic
    }
}

impl PanicDefault for () {
    fn panic_value() -> Self {}
}

impl PanicDefault for bool {
    fn panic_value() -> Self {
        false
    }
}

impl PanicDefault for *const c_char {
    fn panic_value() -> Self {
        c"".as_ptr().cast()
    }
}

/// Runs `f`, turning a panic into `R::panic_value()` and a last error.
pub(crate) fn guard<R: PanicDefault>(f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            set_last_error(&cotyledon::logging::panic_message(&*p));
            R::panic_value()
        }
    }
}

/// Runs a fallible body: `Ok` gives `COTYLEDON_RESULT_OK`, a failure sets
/// the thread's last error and gives its code, a panic gives
/// `COTYLEDON_RESULT_PANIC`.
pub(crate) fn ffi(f: impl FnOnce() -> Result<(), Failure>) -> cotyledon_result {
    guard(|| match f() {
        Ok(()) => cotyledon_result::Ok,
        Err(fail) => {
            set_last_error(&fail.message);
            fail.code
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: last_error_ptr gives a valid NUL-terminated string.
        unsafe { CStr::from_ptr(crate::error::last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_result_code_and_a_message() {
        let r = ffi(|| panic!("boom"));
        assert_eq!(r, cotyledon_result::Panic);
        assert_eq!(last(), "panic: boom");
        let p: *const c_char = guard(|| panic!("again"));
        // SAFETY: the panic value is a static empty C string.
        assert_eq!(unsafe { CStr::from_ptr(p) }.to_bytes(), b"");
        assert_eq!(last(), "panic: again");
    }

    #[test]
    fn failures_set_the_last_error_and_success_keeps_it() {
        let r = ffi(|| Err(Failure::new(cotyledon_result::Io, "disk on fire")));
        assert_eq!(r, cotyledon_result::Io);
        assert_eq!(ffi(|| Ok(())), cotyledon_result::Ok);
        assert_eq!(last(), "disk on fire");
    }

    #[test]
    fn core_errors_map_to_stable_codes() {
        let f: Failure = cotyledon::Error::AlreadyCreated.into();
        assert_eq!(f.code as u32, 6);
        assert!(f.message.starts_with("a service manager already exists"));
        let f: Failure = cotyledon::Error::InvalidWorkers {
            minimum: 1,
            maximum: cotyledon::MAX_WORKERS,
            given: 0,
        }
        .into();
        assert_eq!(f.code as u32, 5);
        assert_eq!(f.message, "invalid worker count 0: the minimum is 1");
        let f: Failure = cotyledon::Error::DuplicateServiceName("web".into()).into();
        assert_eq!(f.code as u32, 14);
        assert_eq!(f.message, "a service named \"web\" was already added");
        let f: Failure = cotyledon::Error::NotInMaster { pid: 2, master: 1 }.into();
        assert_eq!(f.code as u32, 15);
        let f: Failure = cotyledon::Error::EmptyServiceName.into();
        assert_eq!(f.code as u32, 14);
    }
}
