//! `cotyledon_manager`: the master process's service manager.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{ManagerHandle, ServiceId, ServiceManager, Settings};

use crate::boundary::{ffi, guard};
use crate::config::{cotyledon_config, CONFIGS};
use crate::error::{cotyledon_result, Failure};
use crate::logging::ensure_logger;
use crate::registry::Registry;
use crate::service::{self, cotyledon_service, Ptr};

/// The service manager (opaque): starts, supervises and stops the worker
/// processes of its services. One per process unless the config says
/// otherwise. Created by `cotyledon_manager_new`, freed by
/// `cotyledon_manager_free`.
///
/// Threads: every function may be called from any thread. `reconfigure`,
/// `workers`, `shutdown`, `set_graceful_shutdown_timeout_ms` and the hook
/// registrations may be called while `run` executes, from another thread
/// or from a hook. `add` is for before `run`.
pub struct cotyledon_manager {
    _private: [u8; 0],
}

/// A hook without arguments (`on_terminate`, `on_reload`): return 0, or
/// nonzero to report a failure (logged as `Exception raised during <name>
/// hooks`, and the event's remaining hooks are skipped).
pub type cotyledon_hook = Option<unsafe extern "C" fn(userdata: *mut c_void) -> c_int>;

/// A hook run in each new worker: the service's id, the worker's id and
/// the instance its `create` made. Return 0, or nonzero to report a
/// failure (as for `cotyledon_hook`).
pub type cotyledon_new_worker_hook = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        service_id: u64,
        worker_id: u64,
        instance: *mut c_void,
    ) -> c_int,
>;

/// A hook run in the master for each worker that ended while supervised:
/// its service's id, its worker id and its exit status (negative: killed
/// by that signal, e.g. -9). Return 0, or nonzero to report a failure (as
/// for `cotyledon_hook`).
pub type cotyledon_dead_worker_hook = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        service_id: u64,
        worker_id: u64,
        exit_code: c_int,
    ) -> c_int,
>;

enum State {
    Ready(ServiceManager),
    Running,
    Done(#[allow(dead_code)] ServiceManager),
}

pub(crate) struct Manager {
    handle: ManagerHandle,
    state: Mutex<State>,
}

impl Manager {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle hooks are added through, unless `run` has returned (the
    /// hook would never run).
    fn hook_handle(&self) -> Result<&ManagerHandle, Failure> {
        match &*self.state() {
            State::Done(_) => Err(cotyledon::Error::AlreadyRunning.into()),
            _ => Ok(&self.handle),
        }
    }

    /// Runs `f` on the manager if it has not started running.
    fn ready<T>(
        &self,
        f: impl FnOnce(&mut ServiceManager) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        match &mut *self.state() {
            State::Ready(m) => f(m),
            _ => Err(cotyledon::Error::AlreadyRunning.into()),
        }
    }
}

static MANAGERS: Registry<Manager> = Registry::new("manager");

extern "C" {
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
}

/// Flushes C's stdout and stderr. Not `fflush(NULL)`: that also locks input
/// streams, and waits forever for a thread blocked reading stdin.
fn flush_stdio() {
    // SAFETY: reads the C library's stream pointers and flushes them, as
    // any C code may.
    unsafe {
        libc::fflush(stdout);
        libc::fflush(stderr);
    }
}

fn hook_result(rc: c_int) -> cotyledon::HookResult {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("hook returned {rc}").into())
    }
}

fn out_ptr<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

/// Creates the manager: sets the master's process title and, unless the
/// config says otherwise, makes the process a session leader. Installs the
/// library's logger (see `cotyledon_set_log_callback`).
///
/// `config` may be NULL (Cotyledon's defaults); it is copied, the caller
/// keeps owning it. On success writes a new handle to `*out`, owned by the
/// caller, who frees it with `cotyledon_manager_free`.
///
/// Errors: `NULL_PARAMETER` (`out`), `INVALID_HANDLE` (`config`),
/// `ALREADY_CREATED` (another manager is alive and the config asks for a
/// single instance), `IO`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_new(
    config: *const cotyledon_config,
    out: *mut *mut cotyledon_manager,
) -> cotyledon_result {
    ffi(|| {
        out_ptr(out, "out")?;
        ensure_logger();
        let settings = if config.is_null() {
            Settings::default()
        } else {
            CONFIGS.get(config)?.settings().clone()
        };
        let mut manager = ServiceManager::with_settings(settings)?;
        // Workers and a fast-exiting master end with _exit: flush what the
        // program wrote with stdio first.
        manager.set_on_exit(|_| flush_stdio());
        // Flush stdio before each fork, so a worker does not inherit (and
        // later flush) a copy of what the master had buffered.
        manager.set_fork_wrapper(|fork| {
            flush_stdio();
            fork()
        });
        let handle = MANAGERS.insert(Manager {
            handle: manager.handle(),
            state: Mutex::new(State::Ready(manager)),
        });
        // SAFETY: checked non-NULL; the caller provides writable memory.
        unsafe { *out = handle as *mut cotyledon_manager };
        Ok(())
    })
}

/// Frees the manager; a new one may then be created. NULL and handles that
/// are not live are ignored. Freeing while `run` executes (from a hook or
/// another thread) is allowed: the manager then goes away when `run`
/// returns. The userdata pointers given to it are not touched: they belong
/// to the program.
#[no_mangle]
pub extern "C" fn cotyledon_manager_free(manager: *mut cotyledon_manager) {
    guard(|| {
        if !manager.is_null() {
            let _ = ffi(|| MANAGERS.remove(manager).map(drop));
        }
    })
}

/// Adds a service named `name` (UTF-8, copied) of `workers` worker
/// processes, started in the order services are added. `*service` is
/// copied; `userdata` is passed first to each of its callbacks, in the
/// workers (it stays owned by the program and must stay valid while the
/// manager runs). On success writes the service's id to `*out_id` unless
/// `out_id` is NULL.
///
/// Errors: `NULL_PARAMETER` (`manager`, `name`, `service`),
/// `INVALID_HANDLE`, `INVALID_ARGUMENT` (name not UTF-8),
/// `INVALID_WORKERS` (`workers` < 1), `ALREADY_RUNNING` (after `run`).
#[no_mangle]
pub extern "C" fn cotyledon_manager_add(
    manager: *mut cotyledon_manager,
    name: *const c_char,
    workers: i64,
    service: *const cotyledon_service,
    userdata: *mut c_void,
    out_id: *mut u64,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        if name.is_null() {
            return Err(Failure::null("name"));
        }
        if service.is_null() {
            return Err(Failure::null("service"));
        }
        // SAFETY: non-NULL, NUL-terminated (caller).
        let name = unsafe { CStr::from_ptr(name) }
            .to_str()
            .map_err(|_| Failure::new(cotyledon_result::InvalidArgument, "name is not UTF-8"))?
            .to_string();
        // SAFETY: non-NULL, points to a cotyledon_service (caller).
        let cb = unsafe { *service };
        let ud = Ptr(userdata);
        // The core validates the count.
        let id = m.ready(|sm| Ok(sm.add(name, workers, move |w| service::create(cb, ud, w))?))?;
        if !out_id.is_null() {
            // SAFETY: non-NULL, writable (caller).
            unsafe { *out_id = id.as_u64() };
        }
        Ok(())
    })
}

/// Changes the number of workers of service `service_id`, at the next
/// supervision pass: missing workers are started, workers whose id is at or
/// above the new count get SIGTERM. Resets the fork-rate limiter. A count
/// of 0 or less stops every worker of the service; it may not be below
/// `1 - current`. Callable before and during `run`, from any thread and
/// from hooks.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `UNKNOWN_SERVICE`,
/// `INVALID_WORKERS`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_reconfigure(
    manager: *mut cotyledon_manager,
    service_id: u64,
    workers: i64,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        // The core's service table says which ids exist.
        Ok(m.handle.reconfigure(ServiceId::from(service_id), workers)?)
    })
}

/// Writes the number of workers service `service_id` is configured with to
/// `*out`. Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `UNKNOWN_SERVICE`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_workers(
    manager: *const cotyledon_manager,
    service_id: u64,
    out: *mut i64,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        out_ptr(out, "out")?;
        let n = m
            .handle
            .workers(ServiceId::from(service_id))
            .ok_or_else(|| {
                Failure::new(
                    cotyledon_result::UnknownService,
                    format!("{service_id} service id doesn't exists"),
                )
            })?;
        // SAFETY: non-NULL, writable (caller).
        unsafe { *out = n };
        Ok(())
    })
}

/// Starts a graceful shutdown, as SIGTERM does, and logs `Manager shutdown
/// requested`; returns at once (`run` then returns). Callable from any
/// thread and from hooks; harmless before `run` (the next `run` stops at
/// once), and after it.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_shutdown(manager: *mut cotyledon_manager) -> cotyledon_result {
    ffi(|| {
        MANAGERS.get(manager)?.handle.shutdown();
        Ok(())
    })
}

/// Changes the graceful shutdown timeout, in milliseconds (0 = forever);
/// workers started afterwards use the new value. Callable at any time.
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_set_graceful_shutdown_timeout_ms(
    manager: *mut cotyledon_manager,
    milliseconds: u64,
) -> cotyledon_result {
    ffi(|| {
        MANAGERS
            .get(manager)?
            .handle
            .set_graceful_shutdown_timeout(Duration::from_millis(milliseconds));
        Ok(())
    })
}

fn add_plain_hook(
    manager: *mut cotyledon_manager,
    hook: cotyledon_hook,
    userdata: *mut c_void,
    reload: bool,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        let hook = hook.ok_or_else(|| Failure::null("hook"))?;
        let ud = Ptr(userdata);
        // SAFETY (in the closure): a hook the program registered, with its
        // userdata.
        let call = move || hook_result(unsafe { hook(ud.get()) });
        let h = m.hook_handle()?;
        if reload {
            h.on_reload(call);
        } else {
            h.on_terminate(call);
        }
        Ok(())
    })
}

/// Adds a hook run in the master on SIGTERM (or `shutdown`), in the thread
/// running `run`, before the workers are stopped. Hooks run in the order
/// added. `userdata` is passed first and stays owned by the program.
///
/// Hooks may also be added while `run` executes (from another thread or
/// from a hook): they run from the next such event on (a hook added by a
/// reload hook does not run on the same SIGHUP; a new-worker hook runs in
/// workers forked afterwards).
///
/// Errors: `NULL_PARAMETER` (`manager`, `hook`), `INVALID_HANDLE`,
/// `ALREADY_RUNNING` (`run` has returned: the hook would never run).
#[no_mangle]
pub extern "C" fn cotyledon_manager_on_terminate(
    manager: *mut cotyledon_manager,
    hook: cotyledon_hook,
    userdata: *mut c_void,
) -> cotyledon_result {
    add_plain_hook(manager, hook, userdata, false)
}

/// Adds a hook run in the master on SIGHUP, in the thread running `run`,
/// before the workers are told to reload. Otherwise as
/// `cotyledon_manager_on_terminate`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_on_reload(
    manager: *mut cotyledon_manager,
    hook: cotyledon_hook,
    userdata: *mut c_void,
) -> cotyledon_result {
    add_plain_hook(manager, hook, userdata, true)
}

/// Adds a hook run in each new worker process, once its instance is
/// created and before `run` starts, in the worker's main thread.
/// Otherwise as `cotyledon_manager_on_terminate`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_on_new_worker(
    manager: *mut cotyledon_manager,
    hook: cotyledon_new_worker_hook,
    userdata: *mut c_void,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        let hook = hook.ok_or_else(|| Failure::null("hook"))?;
        let ud = Ptr(userdata);
        m.hook_handle()?.on_new_worker(move |sid, wid, _service| {
            let instance = service::worker_instance();
            // SAFETY: a hook the program registered, with its userdata.
            hook_result(unsafe { hook(ud.get(), sid.as_u64(), wid as u64, instance) })
        });
        Ok(())
    })
}

/// Adds a hook run in the master, in the thread running `run`, for each
/// worker that ended while supervised, before the `Child <pid> exited ...`
/// line. Otherwise as `cotyledon_manager_on_terminate`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_on_dead_worker(
    manager: *mut cotyledon_manager,
    hook: cotyledon_dead_worker_hook,
    userdata: *mut c_void,
) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        let hook = hook.ok_or_else(|| Failure::null("hook"))?;
        let ud = Ptr(userdata);
        m.hook_handle()?.on_dead_worker(move |sid, wid, code| {
            // SAFETY: a hook the program registered, with its userdata.
            hook_result(unsafe { hook(ud.get(), sid.as_u64(), wid as u64, code) })
        });
        Ok(())
    })
}

/// Starts the workers and supervises them until a graceful shutdown
/// (SIGTERM or `cotyledon_manager_shutdown`), then returns
/// `COTYLEDON_RESULT_OK`; the program then usually exits 0.
///
/// Blocks the calling thread; the master's hooks run in it. Installs
/// signal handlers for SIGTERM, SIGINT, SIGHUP and SIGCHLD while it runs.
/// Does not return in the worker processes it forks (they end with
/// `_exit` after flushing stdio), nor on SIGINT or when the graceful
/// shutdown times out: the master then exits with status 1 from inside.
/// Runs once per manager.
///
/// Call it from the process's main thread: at the end of a graceful
/// shutdown the engine sends SIGTERM to its process group (when the master
/// leads it, the default), and when `run` runs in another thread that
/// signal can be delivered after `run` returned, ending the process.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `ALREADY_RUNNING`,
/// `INTERRUPTED`, `IO`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_run(manager: *mut cotyledon_manager) -> cotyledon_result {
    ffi(|| {
        let m = MANAGERS.get(manager)?;
        let mut sm = {
            let mut state = m.state();
            match std::mem::replace(&mut *state, State::Running) {
                State::Ready(sm) => sm,
                other => {
                    *state = other;
                    return Err(cotyledon::Error::AlreadyRunning.into());
                }
            }
        };
        let result = sm.run();
        *m.state() = State::Done(sm);
        Ok(result?)
    })
}
