//! `cotyledon_config`: the settings a manager is created with.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{InitMode, Settings, TitleMode};

use crate::boundary::{ffi, guard};
use crate::error::{cotyledon_result, Failure};
use crate::registry::Registry;

/// The settings of a manager to create (opaque). Create it with
/// `cotyledon_config_new`, change it with the `cotyledon_config_set_*`
/// functions, pass it to `cotyledon_manager_new` (which copies it), free it
/// with `cotyledon_config_free`. A config may be used from several threads
/// (calls are serialized inside).
pub struct cotyledon_config {
    _private: [u8; 0],
}

/// How process titles are set.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cotyledon_title_mode {
    /// Leave process titles alone.
    Off = 0,
    /// Set the kernel's process name (`/proc/PID/comm`, 15 bytes), shown by
    /// `ps -e`, `top` and `pgrep`. The default.
    Comm = 1,
    /// The process name and also the argv area shown by `ps -f` (this
    /// overwrites the memory `argv` points to).
    Full = 2,
}

/// Whether the manager splits off a minimal init when it is created, to
/// reap orphans as PID 1 of a container (see `cotyledon_config_set_init`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cotyledon_init_mode {
    /// Only when the process is PID 1, unless the `COTYLEDON_INIT`
    /// environment variable (`auto`, `always`, `never`) says otherwise. The
    /// default.
    Auto = 0,
    /// Always (when not PID 1 the init is a child subreaper).
    Always = 1,
    /// Never.
    Never = 2,
}

pub(crate) struct Config {
    settings: Mutex<Settings>,
}

impl Config {
    pub(crate) fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) static CONFIGS: Registry<Config> = Registry::new("config");

fn with_config(
    config: *mut cotyledon_config,
    f: impl FnOnce(&mut Settings) -> Result<(), Failure>,
) -> cotyledon_result {
    ffi(|| {
        let config = CONFIGS.get(config)?;
        let mut settings = config.settings();
        f(&mut settings)
    })
}

/// Creates a config with Cotyledon's defaults: wait interval 10 ms,
/// graceful shutdown timeout 60 s, single instance, session leader, process
/// names set, systemd notified.
///
/// On success writes a new handle to `*out`, owned by the caller, who frees
/// it with `cotyledon_config_free`. Errors: `NULL_PARAMETER` (`out`).
#[no_mangle]
pub extern "C" fn cotyledon_config_new(out: *mut *mut cotyledon_config) -> cotyledon_result {
    ffi(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let handle = CONFIGS.insert(Config {
            settings: Mutex::new(Settings::default()),
        });
        // SAFETY: `out` is non-NULL and points to writable memory (caller).
        unsafe { *out = handle as *mut cotyledon_config };
        Ok(())
    })
}

/// Frees a config. NULL is ignored; a handle that is not live (already
/// freed) is ignored too (the thread's last error says so). Managers
/// created from it are not affected.
#[no_mangle]
pub extern "C" fn cotyledon_config_free(config: *mut cotyledon_config) {
    guard(|| {
        if !config.is_null() {
            let _ = ffi(|| CONFIGS.remove(config).map(drop));
        }
    })
}

/// Pause before each fork, in milliseconds (default 10).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_wait_interval_ms(
    config: *mut cotyledon_config,
    milliseconds: u64,
) -> cotyledon_result {
    with_config(config, |s| {
        s.wait_interval = Duration::from_millis(milliseconds);
        Ok(())
    })
}

/// How long a graceful shutdown may take, in milliseconds, for the master
/// and for each worker's `terminate` (default 60000; 0 waits forever).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_graceful_shutdown_timeout_ms(
    config: *mut cotyledon_config,
    milliseconds: u64,
) -> cotyledon_result {
    with_config(config, |s| {
        s.graceful_shutdown_timeout = Duration::from_millis(milliseconds);
        Ok(())
    })
}

/// Whether a second live manager is refused with `ALREADY_CREATED`
/// (default true). Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_single_instance(
    config: *mut cotyledon_config,
    single_instance: bool,
) -> cotyledon_result {
    with_config(config, |s| {
        s.single_instance = single_instance;
        Ok(())
    })
}

/// How long, in milliseconds, the master waits for its workers after the
/// SIGINT of a fast exit (SIGINT to the master, or the graceful shutdown
/// timeout exceeded) before it sends SIGKILL to the workers still alive,
/// every process they started and the rest of its process group, and
/// reaps them before `run` returns (default 500; 0 kills at once).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_kill_grace_ms(
    config: *mut cotyledon_config,
    milliseconds: u64,
) -> cotyledon_result {
    with_config(config, |s| {
        s.kill_grace = Duration::from_millis(milliseconds);
        Ok(())
    })
}

/// Whether the manager makes the process a session leader when it is
/// created, when it can (default true).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_session_leader(
    config: *mut cotyledon_config,
    session_leader: bool,
) -> cotyledon_result {
    with_config(config, |s| {
        s.session_leader = session_leader;
        Ok(())
    })
}

/// Whether a manager created in the foreground of a terminal stays in the
/// terminal's foreground process group instead of becoming a session
/// leader, so that Ctrl-C reaches it and its workers (default true; see
/// `cotyledon_config_set_session_leader`).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_keep_terminal(
    config: *mut cotyledon_config,
    keep_terminal: bool,
) -> cotyledon_result {
    with_config(config, |s| {
        s.keep_terminal = keep_terminal;
        Ok(())
    })
}

/// How process titles are set: a `cotyledon_title_mode` value (default
/// `COTYLEDON_TITLE_MODE_COMM`).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT` (unknown
/// mode).
#[no_mangle]
pub extern "C" fn cotyledon_config_set_titles(
    config: *mut cotyledon_config,
    mode: u32,
) -> cotyledon_result {
    with_config(config, |s| {
        s.titles = match mode {
            0 => TitleMode::Off,
            1 => TitleMode::Comm,
            2 => TitleMode::Full,
            m => {
                return Err(Failure::new(
                    cotyledon_result::InvalidArgument,
                    format!("unknown title mode {m}"),
                ))
            }
        };
        Ok(())
    })
}

/// Whether `run` sends `READY=1` to systemd when `NOTIFY_SOCKET` is set
/// (default true). Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_notify_systemd(
    config: *mut cotyledon_config,
    notify_systemd: bool,
) -> cotyledon_result {
    with_config(config, |s| {
        s.notify_systemd = notify_systemd;
        Ok(())
    })
}

/// Whether `cotyledon_manager_new` splits off a minimal init: a
/// `cotyledon_init_mode` value (default `COTYLEDON_INIT_MODE_AUTO`).
///
/// Run as PID 1 (a container started without `--init`), the process is
/// handed every orphan of its namespace, and the master reaps only its own
/// workers. So when it splits, `cotyledon_manager_new` forks first: the
/// original process stays PID 1 as a minimal init that reaps every orphan,
/// forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
/// to the master, and when the master ends exits with its status (its exit
/// code, or 128 + the signal that killed it); the call returns only in the
/// new process, the master. `AUTO` splits when the process is PID 1, or as
/// the `COTYLEDON_INIT` environment variable says (`auto`, `always`,
/// `never`; another value makes `cotyledon_manager_new` fail with
/// `INVALID_ARGUMENT`); `ALWAYS` and `NEVER` are not overridden by it.
/// Create the manager before starting threads: a thread started earlier
/// stays in the init, not in the master.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT` (unknown
/// mode).
#[no_mangle]
pub extern "C" fn cotyledon_config_set_init(
    config: *mut cotyledon_config,
    mode: u32,
) -> cotyledon_result {
    with_config(config, |s| {
        s.init = match mode {
            0 => InitMode::Auto,
            1 => InitMode::Always,
            2 => InitMode::Never,
            m => {
                return Err(Failure::new(
                    cotyledon_result::InvalidArgument,
                    format!("unknown init mode {m}"),
                ))
            }
        };
        Ok(())
    })
}

/// A path argument: NULL gives `None`; not UTF-8 or empty is refused.
fn path_arg(path: *const c_char) -> Result<Option<PathBuf>, Failure> {
    if path.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, NUL-terminated (caller).
    let text = unsafe { CStr::from_ptr(path) }
        .to_str()
        .map_err(|_| Failure::new(cotyledon_result::InvalidArgument, "path is not UTF-8"))?;
    if text.is_empty() {
        return Err(Failure::new(
            cotyledon_result::InvalidArgument,
            "path must not be empty (NULL clears it)",
        ));
    }
    Ok(Some(PathBuf::from(text)))
}

/// Serves the control socket at `path` (UTF-8, copied) while `run`
/// executes: a UNIX stream socket, mode 0600, where `cotyledon-ctl --socket
/// PATH` (or any client speaking its line-based JSON protocol) asks for the
/// status and metrics, reloads, scales, restarts a worker or stops the
/// master. `run` creates it (replacing a stale socket left by a dead
/// master; failing with `IO` if a live master serves it, if the path is
/// another kind of file, or if it is too long for a socket address: 107
/// bytes) and removes it when it returns; workers do not inherit it.
/// Anyone who can connect can control the master: put it in a directory
/// only its users can reach. Default: none, unless the
/// `COTYLEDON_CONTROL_SOCKET` environment variable names one when `run`
/// starts; NULL restores that default.
///
/// Errors: `NULL_PARAMETER` (`config`), `INVALID_HANDLE`,
/// `INVALID_ARGUMENT` (`path` empty or not UTF-8).
#[no_mangle]
pub extern "C" fn cotyledon_config_set_control_socket(
    config: *mut cotyledon_config,
    path: *const c_char,
) -> cotyledon_result {
    with_config(config, |s| {
        s.control_socket = path_arg(path)?;
        Ok(())
    })
}

/// Writes the Prometheus metrics (the text of `cotyledon-ctl metrics`) to
/// the file `path` (UTF-8, copied) while `run` executes, every metrics
/// interval, atomically (a temporary file renamed over it), for
/// node_exporter's textfile collector. Default: none, unless the
/// `COTYLEDON_METRICS_FILE` environment variable names one when `run`
/// starts; NULL restores that default.
///
/// Errors: `NULL_PARAMETER` (`config`), `INVALID_HANDLE`,
/// `INVALID_ARGUMENT` (`path` empty or not UTF-8).
#[no_mangle]
pub extern "C" fn cotyledon_config_set_metrics_file(
    config: *mut cotyledon_config,
    path: *const c_char,
) -> cotyledon_result {
    with_config(config, |s| {
        s.metrics_file = path_arg(path)?;
        Ok(())
    })
}

/// How often the metrics file is written, in milliseconds (default 15000;
/// values below 100 count as 100).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_config_set_metrics_interval_ms(
    config: *mut cotyledon_config,
    milliseconds: u64,
) -> cotyledon_result {
    with_config(config, |s| {
        s.metrics_interval = Duration::from_millis(milliseconds);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_socket_and_metrics_settings() {
        let mut c = std::ptr::null_mut();
        assert_eq!(cotyledon_config_new(&mut c), cotyledon_result::Ok);
        let get = |c| CONFIGS.get(c).unwrap().settings().clone();
        assert_eq!(
            cotyledon_config_set_control_socket(c, c"/run/x.sock".as_ptr()),
            cotyledon_result::Ok
        );
        assert_eq!(
            cotyledon_config_set_metrics_file(c, c"/var/m.prom".as_ptr()),
            cotyledon_result::Ok
        );
        assert_eq!(
            cotyledon_config_set_metrics_interval_ms(c, 2500),
            cotyledon_result::Ok
        );
        assert_eq!(get(c).kill_grace, Duration::from_millis(500));
        assert_eq!(
            cotyledon_config_set_kill_grace_ms(c, 300),
            cotyledon_result::Ok
        );
        let s = get(c);
        assert_eq!(s.control_socket, Some(PathBuf::from("/run/x.sock")));
        assert_eq!(s.kill_grace, Duration::from_millis(300));
        assert_eq!(s.metrics_file, Some(PathBuf::from("/var/m.prom")));
        assert_eq!(s.metrics_interval, Duration::from_millis(2500));
        // refused: empty, not UTF-8; the setting stays
        for bad in [c"", c"/tmp/\xff.sock"] {
            let r = cotyledon_config_set_control_socket(c, bad.as_ptr());
            assert_eq!(r, cotyledon_result::InvalidArgument);
            let r = cotyledon_config_set_metrics_file(c, bad.as_ptr());
            assert_eq!(r, cotyledon_result::InvalidArgument);
        }
        assert_eq!(get(c).control_socket, Some(PathBuf::from("/run/x.sock")));
        assert_eq!(get(c).init, InitMode::Auto);
        assert_eq!(cotyledon_config_set_init(c, 1), cotyledon_result::Ok);
        assert_eq!(get(c).init, InitMode::Always);
        assert_eq!(cotyledon_config_set_init(c, 2), cotyledon_result::Ok);
        assert_eq!(
            cotyledon_config_set_init(c, 3),
            cotyledon_result::InvalidArgument
        );
        assert_eq!(get(c).init, InitMode::Never);
        // NULL clears
        let null = std::ptr::null();
        assert_eq!(
            cotyledon_config_set_control_socket(c, null),
            cotyledon_result::Ok
        );
        assert_eq!(
            cotyledon_config_set_metrics_file(c, null),
            cotyledon_result::Ok
        );
        let s = get(c);
        assert_eq!((s.control_socket, s.metrics_file), (None, None));
        cotyledon_config_free(c);
        let r = cotyledon_config_set_control_socket(c, c"/x".as_ptr());
        assert_eq!(r, cotyledon_result::InvalidHandle);
        let r = cotyledon_config_set_metrics_interval_ms(std::ptr::null_mut(), 1);
        assert_eq!(r, cotyledon_result::NullParameter);
        let r = cotyledon_config_set_kill_grace_ms(std::ptr::null_mut(), 1);
        assert_eq!(r, cotyledon_result::NullParameter);
        let r = cotyledon_config_set_kill_grace_ms(c, 1);
        assert_eq!(r, cotyledon_result::InvalidHandle);
    }
}
