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

impl PanicDefault for *const c_char {
    fn panic_value() -> Self {
        c"".as_ptr().cast()
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}

/// Runs `f`, turning a panic into `R::panic_value()` and a last error.
pub(crate) fn guard<R: PanicDefault>(f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            set_last_error(&panic_text(&*p));
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
