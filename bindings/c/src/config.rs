//! `cotyledon_config`: the settings a manager is created with.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{Settings, TitleMode};

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
