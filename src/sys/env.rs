//! The process environment.

use std::ffi::CStr;

extern "C" {
    /// The C library's environment: a NULL-terminated array of
    /// `NAME=value` strings.
    static mut environ: *mut *mut libc::c_char;
}

/// Removes the variables `names` from the environment of a child just
/// forked, before it runs anything else.
///
/// Done in place on `environ`, the way `unsetenv` itself does it, but
/// without the C library's lock: another thread of the parent may have
/// held that lock at the fork, and in the child nobody would release it.
/// The master never changes its own environment, which its other threads
/// may be reading.
pub(crate) fn strip_after_fork(names: &[&str]) {
    let matches = |entry: &[u8]| {
        names.iter().any(|n| {
            entry.len() > n.len() && entry.starts_with(n.as_bytes()) && entry[n.len()] == b'='
        })
    };
    // SAFETY: called in a child just forked, whose only thread is the
    // caller: nothing else reads or writes `environ` meanwhile. `environ`
    // is NULL or a NULL-terminated array of valid C strings (the C
    // library's invariant); we only move its pointers down over the
    // removed ones, within the array, and write the terminating NULL at or
    // before the old one. No string is freed or changed.
    unsafe {
        let base = std::ptr::addr_of_mut!(environ).read();
        if base.is_null() {
            return;
        }
        let mut src = base;
        let mut dst = base;
        while !(*src).is_null() {
            if !matches(CStr::from_ptr(*src).to_bytes()) {
                *dst = *src;
                dst = dst.add(1);
            }
            src = src.add(1);
        }
        *dst = std::ptr::null_mut();
    }
}
