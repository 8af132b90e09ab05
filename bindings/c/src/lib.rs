//! libcotyledon: the C API of the cotyledon engine.
//!
//! A C program describes services as structs of callbacks, adds them to a
//! manager and runs it; see `include/cotyledon.h` (generated from this
//! crate by cbindgen) and `bindings/c/README.md`.
//!
//! Conventions: every fallible function returns a `cotyledon_result`;
//! out-parameters are written only on success; the detail of the last
//! failure of a thread is in `cotyledon_last_error_message()`; handles are
//! checked (NULL, freed or foreign handles give an error code); no panic
//! crosses the boundary (every export goes through `boundary::ffi` or
//! `boundary::guard`).
#![allow(non_camel_case_types)]
// The exports take raw pointers from C and check them for NULL (and
// handles against the registry); marking them `unsafe fn` would change
// nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, c_void, CStr};

mod boundary;
mod config;
mod error;
mod logging;
mod manager;
mod policy;
mod registry;
mod service;
mod strings;

pub use config::*;
pub use error::cotyledon_result;
pub use logging::{cotyledon_log_callback, cotyledon_log_level};
pub use manager::*;
pub use policy::*;
pub use service::{cotyledon_service, cotyledon_worker_identity};
pub use strings::cotyledon_string_free;

use boundary::guard;

/// Major version of this library (the cotyledon release it implements).
pub const COTYLEDON_VERSION_MAJOR: u32 = 2;
/// Minor version.
pub const COTYLEDON_VERSION_MINOR: u32 = 2;
/// Patch version.
pub const COTYLEDON_VERSION_PATCH: u32 = 0;
/// The version of the status JSON schema (`cotyledon_manager_status_json`)
/// and of the control socket's protocol. It changes when a member changes
/// meaning or goes away; new members do not change it.
pub const COTYLEDON_PROTOCOL_VERSION: u32 = 1;
/// The C ABI's number, the `N` of the SONAME `libcotyledon.so.N`: a program
/// built against this header runs with any library of the same ABI
/// number, whatever its version. It changes only when something a
/// program uses is removed or changed; additions keep it.
pub const COTYLEDON_ABI_VERSION: u32 = 2;
/// The exit status a manager gives back when a service's restart policy
/// gives up (see `cotyledon_policy_set_give_up`).
pub const COTYLEDON_GIVE_UP_STATUS: i32 = 125;
const _: () = assert!(COTYLEDON_GIVE_UP_STATUS == cotyledon::GIVE_UP_STATUS);
/// The most workers a service may have: `cotyledon_manager_add` and
/// `cotyledon_manager_reconfigure` refuse a larger count with
/// `COTYLEDON_RESULT_INVALID_WORKERS` (`workers must be at most 10000, not
/// W`), as they refuse one below their minimum.
pub const COTYLEDON_MAX_WORKERS: i64 = 10_000;
const _: () = assert!(COTYLEDON_MAX_WORKERS == cotyledon::MAX_WORKERS);

/// The version as a string (cbindgen cannot export string constants).
const VERSION: &CStr = c"2.2.0";

const fn parse(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

const fn same(a: &str, b: &[u8]) -> bool {
    let a = a.as_bytes();
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// The header's version macros must match Cargo.toml: the build fails if not.
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_MAJOR")) == COTYLEDON_VERSION_MAJOR);
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_MINOR")) == COTYLEDON_VERSION_MINOR);
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_PATCH")) == COTYLEDON_VERSION_PATCH);
const _: () = assert!(same(env!("CARGO_PKG_VERSION"), VERSION.to_bytes()));
// The header's ABI macro must match the SONAME (Cargo.toml, via build.rs).
const _: () = assert!(parse(env!("COTYLEDON_ABI")) == COTYLEDON_ABI_VERSION);
// The header's protocol macro must match the core's.
const _: () = assert!(COTYLEDON_PROTOCOL_VERSION == cotyledon::status::PROTOCOL_VERSION);

/// The library's version, e.g. `"2.2.0"`: a static string, never NULL.
/// Compare with the `COTYLEDON_VERSION_*` macros to check that the header
/// matches the library.
#[no_mangle]
pub extern "C" fn cotyledon_version() -> *const c_char {
    guard(|| VERSION.as_ptr())
}

/// The static text of a result code (any number: unknown codes give
/// `"unknown result code"`). Never NULL; never to be freed.
#[no_mangle]
pub extern "C" fn cotyledon_result_str(result: u32) -> *const c_char {
    guard(|| error::result_text(result))
}

/// The detail of the last failed call on this thread (e.g.
/// `invalid worker count 0: the minimum is 1`), or `""` if none failed.
/// Diagnostic only. Never NULL. The string belongs to the library and stays
/// valid until the next failing call on this thread (or the thread's end).
/// Successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn cotyledon_last_error_message() -> *const c_char {
    guard(error::last_error_ptr)
}

/// Sends every log record (the engine's and `cotyledon_log`'s) to
/// `callback`, with `userdata` passed first; NULL restores the default,
/// which writes `LEVEL:target:message` lines to stderr (Python's
/// `logging.basicConfig()` format), one `write(2)` each.
///
/// The callback runs in the master and in the workers, in whichever thread
/// logs (several at once possibly): it must be thread-safe, must not call
/// `cotyledon_set_log_callback`, and should not block. `userdata` stays
/// owned by the program and must stay valid for as long as records may be
/// logged. Set it before `run`: a change made in the master after the
/// workers started does not reach them.
#[no_mangle]
pub extern "C" fn cotyledon_set_log_callback(
    callback: cotyledon_log_callback,
    userdata: *mut c_void,
) {
    guard(|| logging::set_callback(callback, userdata))
}

/// Records below `level` (a `cotyledon_log_level` number) are dropped
/// (default `COTYLEDON_LOG_LEVEL_INFO`; `COTYLEDON_LOG_LEVEL_DEBUG` shows
/// the engine's debug lines). Any thread, any time.
#[no_mangle]
pub extern "C" fn cotyledon_set_log_level(level: u32) {
    guard(|| logging::set_level(level))
}

/// Logs `message` on logger `target` at `level` through the same path as
/// the engine's records (the callback, or stderr), so a program's lines
/// look like the engine's. NULL strings are logged as "". Any thread.
#[no_mangle]
pub extern "C" fn cotyledon_log(level: u32, target: *const c_char, message: *const c_char) {
    guard(|| {
        logging::ensure_logger();
        if logging::enabled(level) {
            logging::emit(
                level,
                &logging::c_str_lossy(target),
                &logging::c_str_lossy(message),
            );
        }
    })
}

/// Python's name of a level number (`"INFO"`, `"WARNING"`, ...), or
/// `"LEVEL"` for a number without one. Static, never NULL.
#[no_mangle]
pub extern "C" fn cotyledon_log_level_name(level: u32) -> *const c_char {
    guard(|| logging::level_name(level).as_ptr())
}

/// In a worker: tells the master that this worker's coming exit, whatever
/// its status, is a restart, so that its service's restart policy neither
/// counts it nor leaves the worker down (see `cotyledon_policy`). Call it
/// from a `reload` callback just before the worker ends itself to restart
/// (`raise(SIGTERM)`); the default `reload` (NULL) does both. Does nothing
/// outside a worker.
#[no_mangle]
pub extern "C" fn cotyledon_announce_restart() {
    guard(cotyledon::announce_restart)
}

/// In a worker process (from `create` on, in any thread): writes which
/// service and worker this process is to `*out` and returns true. Returns
/// false, leaving `*out` alone, in the master, in any process that is not a
/// worker of this library, and when `out` is NULL. The name in `*out`
/// belongs to the library and stays valid for the worker's life.
///
/// ```c
/// cotyledon_worker_identity me;
/// if (cotyledon_current_worker(&me))
///     fprintf(stderr, "%s(%llu): ready\n", me.service_name,
///             (unsigned long long)me.worker_id);
/// ```
#[no_mangle]
pub extern "C" fn cotyledon_current_worker(out: *mut cotyledon_worker_identity) -> bool {
    guard(|| {
        if out.is_null() {
            return false;
        }
        match service::current_identity() {
            Some(me) => {
                // SAFETY: non-NULL, writable (caller).
                unsafe { *out = me };
                true
            }
            None => false,
        }
    })
}
