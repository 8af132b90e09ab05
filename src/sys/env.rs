//! The process environment.

use std::ffi::CString;

/// Removes a variable from the process environment.
///
/// Called from the master before it forks any worker, so that workers
/// cannot notify systemd again.
pub(crate) fn unsetenv(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: `c` is a live NUL-terminated string. unsetenv is not
        // thread-safe against concurrent getenv/setenv; the engine calls this
        // from its own loop before forking workers, and a concurrent getenv
        // from another thread is the caller's documented hazard, the same as
        // with Python's os.environ.
        unsafe {
            libc::unsetenv(c.as_ptr());
        }
    }
}
