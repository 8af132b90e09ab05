//! Strings the library gives to C and the caller frees with
//! `cotyledon_string_free`.
//!
//! They are allocated with the C library's `malloc` (not Rust's
//! allocator): releasing one does not depend on its length, so a caller
//! that shortened it in place, or that calls `free` on it by mistake, does
//! no harm.

use std::ffi::c_char;

use crate::boundary::guard;
use crate::error::{cotyledon_result, Failure};

/// A `malloc`'d copy of `text` with a terminating NUL, for the caller to
/// release with `cotyledon_string_free`. `text` must not contain NUL
/// (JSON text never does: serde_json escapes it as `\u0000`).
pub(crate) fn malloc_string(text: &str) -> Result<*mut c_char, Failure> {
    debug_assert!(!text.as_bytes().contains(&0), "NUL inside a C string");
    let len = text.len();
    // SAFETY: plain allocation; checked for NULL below.
    let p = unsafe { libc::malloc(len + 1) }.cast::<u8>();
    if p.is_null() {
        return Err(Failure::new(
            cotyledon_result::Io,
            format!("out of memory (malloc of {} bytes failed)", len + 1),
        ));
    }
    // SAFETY: `p` holds len + 1 bytes, and does not overlap `text`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), p, len);
        *p.add(len) = 0;
    }
    Ok(p.cast())
}

/// Frees a string this library returned through an out-parameter (such as
/// `cotyledon_manager_status_json`'s). NULL is ignored.
///
/// Pass only strings this library gave you, once each: not the static
/// strings of `cotyledon_result_str`, `cotyledon_version`,
/// `cotyledon_last_error_message` or `cotyledon_log_level_name`, and not
/// memory of your own.
#[no_mangle]
pub extern "C" fn cotyledon_string_free(s: *mut c_char) {
    guard(|| {
        if !s.is_null() {
            // SAFETY: `s` came from `malloc_string` (the caller's contract).
            unsafe { libc::free(s.cast()) }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn a_malloc_string_is_a_nul_terminated_copy() {
        for text in ["", "{\"a\":1}", "é\u{1F600}"] {
            let p = malloc_string(text).unwrap();
            // SAFETY: just made, NUL-terminated.
            assert_eq!(unsafe { CStr::from_ptr(p) }.to_str().unwrap(), text);
            cotyledon_string_free(p);
        }
        cotyledon_string_free(std::ptr::null_mut());
    }
}
