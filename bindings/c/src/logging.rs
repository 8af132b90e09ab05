//! Log records to C: a `log::Log` that hands each record to the callback
//! the program registered, or writes `LEVEL:target:message` to stderr
//! (Python's `logging.basicConfig()` format).

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, Once};

/// Log levels, with Python's `logging` numbers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cotyledon_log_level {
    /// Finer than DEBUG (Rust's TRACE); the engine emits none by default.
    Trace = 5,
    /// DEBUG.
    Debug = 10,
    /// INFO.
    Info = 20,
    /// WARNING.
    Warning = 30,
    /// ERROR.
    Error = 40,
    /// CRITICAL (only from `cotyledon_log`).
    Critical = 50,
}

/// Receives each log record: `userdata` as registered, the level (Python's
/// number, see `cotyledon_log_level`), the logger name (e.g.
/// `"cotyledon._service_manager"`) and the message, both NUL-terminated
/// and valid only during the call.
pub type cotyledon_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    userdata: *mut c_void,
}

// The log path reads the current sink without taking a lock, so a fork
// while another thread logs cannot leave a worker with a locked logger.
// Sinks are never freed (a reader may still use the previous one); every
// one is kept in SINKS so nothing leaks.
static SINK: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());
struct Kept(#[allow(dead_code)] Box<Sink>);
// SAFETY: a Sink is only read; the C side promises the callback and its
// userdata may be used from any thread.
unsafe impl Send for Kept {}
static SINKS: Mutex<Vec<Kept>> = Mutex::new(Vec::new());
static THRESHOLD: AtomicU32 = AtomicU32::new(cotyledon_log_level::Info as u32);

struct CLogger;
static LOGGER: CLogger = CLogger;
static INSTALL: Once = Once::new();

/// Installs the logger (once). Called by every entry point that can lead
/// to log records.
pub(crate) fn ensure_logger() {
    INSTALL.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(max_level_for(THRESHOLD.load(Ordering::Relaxed)));
        }
    });
}

fn max_level_for(threshold: u32) -> log::LevelFilter {
    match threshold {
        0..=5 => log::LevelFilter::Trace,
        6..=10 => log::LevelFilter::Debug,
        11..=20 => log::LevelFilter::Info,
        21..=30 => log::LevelFilter::Warn,
        31..=40 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    }
}

fn level_number(l: log::Level) -> u32 {
    match l {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

/// Python's name for a level number.
pub(crate) fn level_name(level: u32) -> &'static CStr {
    match level {
        50 => c"CRITICAL",
        40 => c"ERROR",
        30 => c"WARNING",
        20 => c"INFO",
        10 => c"DEBUG",
        5 => c"TRACE",
        0 => c"NOTSET",
        _ => c"LEVEL",
    }
}

pub(crate) fn set_level(level: u32) {
    THRESHOLD.store(level, Ordering::Relaxed);
    ensure_logger();
    log::set_max_level(max_level_for(level));
}

pub(crate) fn set_callback(callback: cotyledon_log_callback, userdata: *mut c_void) {
    ensure_logger();
    match callback {
        None => SINK.store(std::ptr::null_mut(), Ordering::Release),
        Some(callback) => {
            let mut sink = Box::new(Sink { callback, userdata });
            let ptr: *mut Sink = &mut *sink;
            SINKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Kept(sink));
            SINK.store(ptr, Ordering::Release);
        }
    }
}

pub(crate) fn enabled(level: u32) -> bool {
    level >= THRESHOLD.load(Ordering::Relaxed)
}

fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Sends one record to the sink (no level check).
pub(crate) fn emit(level: u32, target: &str, message: &str) {
    let sink = SINK.load(Ordering::Acquire);
    if sink.is_null() {
        let name = level_name(level).to_str().unwrap_or("LEVEL");
        let name = if name == "LEVEL" {
            format!("Level {level}")
        } else {
            name.to_string()
        };
        write_stderr(format!("{name}:{target}:{message}\n").as_bytes());
    } else {
        // SAFETY: sinks are never freed (see SINKS).
        let sink = unsafe { &*sink };
        let target = c_text(target);
        let message = c_text(message);
        // SAFETY: the program registered this callback for exactly this
        // call; the strings live until it returns.
        unsafe { (sink.callback)(sink.userdata, level, target.as_ptr(), message.as_ptr()) };
    }
}

/// One `write(2)` per record (as long as it fits in a pipe buffer), so
/// lines of the master and workers do not interleave; no lock of Rust's
/// stderr, which a fork could leave held.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer of the given length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Reads a C string that may be NULL.
pub(crate) fn c_str_lossy<'a>(s: *const c_char) -> std::borrow::Cow<'a, str> {
    if s.is_null() {
        return "".into();
    }
    // SAFETY: the caller passes a NUL-terminated string valid for the call.
    unsafe { CStr::from_ptr(s) }.to_string_lossy()
}

impl log::Log for CLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        enabled(level_number(m.level()))
    }

    fn log(&self, r: &log::Record<'_>) {
        let level = level_number(r.level());
        if !enabled(level) {
            return;
        }
        emit(level, r.target(), &r.args().to_string());
    }

    fn flush(&self) {}
}
