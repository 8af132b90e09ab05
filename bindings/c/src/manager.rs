//! `cotyledon_manager`: the master process's service manager.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{ManagerHandle, ServiceId, ServiceManager, Settings};

use crate::boundary::{ffi, guard};
use crate::config::{cotyledon_config, CONFIGS};
use crate::error::{cotyledon_result, Failure};
use crate::logging::ensure_logger;
use crate::policy::{cotyledon_policy, POLICIES};
use crate::registry::Registry;
use crate::service::{self, cotyledon_service, Ptr};
use crate::strings::malloc_string;

/// The service manager (opaque): starts, supervises and stops the worker
/// processes of its services. One per process unless the config says
/// otherwise. Created by `cotyledon_manager_new`, freed by
/// `cotyledon_manager_free`.
///
/// Threads: every function may be called from any thread. `reconfigure`,
/// `workers`, `status_json`, `reload`, `restart_worker`, `shutdown`,
/// `set_graceful_shutdown_timeout_ms` and the hook registrations may be
/// called while `run` executes, from another thread or from a hook. `add`
/// is for before `run`.
///
/// Processes: the manager works in the master process only. In a worker
/// (the program's `create`, `run`, `terminate`, `reload` callbacks and the
/// new-worker hooks) the manager is a copy that supervises nothing: every
/// function but `cotyledon_manager_free` fails there with
/// `COTYLEDON_RESULT_NOT_IN_MASTER` instead of silently doing nothing.
pub struct cotyledon_manager {
    _private: [u8; 0],
}

/// A hook without arguments (`on_terminate`, `on_reload`): return 0, or
/// nonzero to report a failure, logged as one line, e.g. `Exception raised
/// during reload hooks: hook 2 of 3 failed: hook returned 7` (a dead-worker
/// hook's line also names the service and the worker id); the event's
/// remaining hooks are skipped.
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
    /// What `run` gave back: 0, or a restart policy's exit status.
    exit_status: Mutex<Option<i32>>,
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

/// The live manager behind `manager`, in its master process only: called
/// in a worker (which has a copy of the manager that supervises nothing),
/// every function but `free` fails with `NOT_IN_MASTER`.
fn master(manager: *const cotyledon_manager) -> Result<Arc<Manager>, Failure> {
    let m = MANAGERS.get(manager)?;
    cotyledon::bindings::check_in_master(&m.handle)?;
    Ok(m)
}

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
/// library's logger (see `cotyledon_set_log_callback`). As PID 1 (see
/// `cotyledon_config_set_init`) it first forks: this call then returns in
/// the new process, the master, while the original stays behind as the
/// init and never returns.
///
/// `config` may be NULL (Cotyledon's defaults); it is copied, the caller
/// keeps owning it. On success writes a new handle to `*out`, owned by the
/// caller, who frees it with `cotyledon_manager_free`.
///
/// Errors: `NULL_PARAMETER` (`out`), `INVALID_HANDLE` (`config`),
/// `ALREADY_CREATED` (another manager is alive and the config asks for a
/// single instance), `INVALID_ARGUMENT` (a `COTYLEDON_INIT` value other
/// than `auto`, `always` or `never`), `IO`.
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
        // Flush stdio before each fork (the init's split at creation
        // included), so a child does not inherit (and later flush) a copy
        // of what the parent had buffered.
        let mut manager = cotyledon::bindings::with_fork_wrapper(settings, |fork| {
            flush_stdio();
            fork()
        })?;
        // Workers and a fast-exiting master end with _exit: flush what the
        // program wrote with stdio first.
        cotyledon::bindings::set_on_exit(&mut manager, |_| flush_stdio());
        let handle = MANAGERS.insert(Manager {
            handle: manager.handle(),
            state: Mutex::new(State::Ready(manager)),
            exit_status: Mutex::new(None),
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
/// `INVALID_SERVICE_NAME` (empty, or the name of a service added before),
/// `INVALID_WORKERS` (`workers` < 1 or > `COTYLEDON_MAX_WORKERS`),
/// `ALREADY_RUNNING` (after `run`), `NOT_IN_MASTER` (called in a worker).
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
        let m = master(manager)?;
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
        let id = m.ready(|sm| Ok(sm.add(name, workers, move |me| service::create(cb, ud, me))?))?;
        if !out_id.is_null() {
            // SAFETY: non-NULL, writable (caller).
            unsafe { *out_id = id.as_u64() };
        }
        Ok(())
    })
}

/// Sets the restart policy of service `service_id` (a copy of `*policy`;
/// the caller keeps owning it). Before `run` only.
///
/// ```c
/// cotyledon_policy *policy = NULL;
/// cotyledon_policy_new(&policy);
/// cotyledon_policy_set_restart(policy, COTYLEDON_RESTART_ON_FAILURE);
/// cotyledon_policy_set_backoff_ms(policy, 200, 10000, 0);
/// cotyledon_policy_set_give_up(policy, 5, 60000);
/// cotyledon_manager_set_policy(manager, service_id, policy);
/// cotyledon_policy_free(policy);
/// ```
///
/// Errors: `NULL_PARAMETER` (`manager`, `policy`), `INVALID_HANDLE`
/// (either handle), `UNKNOWN_SERVICE`, `ALREADY_RUNNING`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_set_policy(
    manager: *mut cotyledon_manager,
    service_id: u64,
    policy: *const cotyledon_policy,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        if policy.is_null() {
            return Err(Failure::null("policy"));
        }
        let policy = POLICIES.get(policy)?.get();
        m.ready(|sm| Ok(sm.set_policy(ServiceId::from(service_id), policy)?))
    })
}

/// Writes the exit status `cotyledon_manager_run` gave back to `*out`: 0
/// after a graceful stop, or the status a restart policy stopped the
/// manager with (`COTYLEDON_GIVE_UP_STATUS` for a give-up, the last
/// failure's for a stop on exit) after `COTYLEDON_RESULT_STOPPED`.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT` (`run`
/// has not returned, or returned another error).
#[no_mangle]
pub extern "C" fn cotyledon_manager_exit_status(
    manager: *const cotyledon_manager,
    out: *mut c_int,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        out_ptr(out, "out")?;
        let status = m
            .exit_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| {
                Failure::new(
                    cotyledon_result::InvalidArgument,
                    "cotyledon_manager_run has not returned OK or STOPPED",
                )
            })?;
        // SAFETY: non-NULL, writable (caller).
        unsafe { *out = status };
        Ok(())
    })
}

/// Changes the number of workers of service `service_id`, at the next
/// supervision pass: missing workers are started, workers whose id is at or
/// above the new count get SIGTERM. Resets the fork-rate limiter. A count
/// of 0 or less stops every worker of the service; it may not be below
/// `1 - current`, nor above `COTYLEDON_MAX_WORKERS`. Callable before and
/// during `run`, from any thread and from hooks, in the master.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `UNKNOWN_SERVICE`,
/// `INVALID_WORKERS`, `NOT_IN_MASTER` (called in a worker: its copy of the
/// manager supervises nothing).
#[no_mangle]
pub extern "C" fn cotyledon_manager_reconfigure(
    manager: *mut cotyledon_manager,
    service_id: u64,
    workers: i64,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
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
        let m = master(manager)?;
        out_ptr(out, "out")?;
        let n = m.handle.workers(ServiceId::from(service_id)).ok_or(
            cotyledon::Error::UnknownService(ServiceId::from(service_id)),
        )?;
        // SAFETY: non-NULL, writable (caller).
        unsafe { *out = n };
        Ok(())
    })
}

/// Starts a graceful shutdown, as SIGTERM does, and logs `Manager shutdown
/// requested`, then `Shutdown requested, graceful exiting of master
/// process` (where SIGTERM logs `Caught SIGTERM signal, ...`); returns at
/// once (`run` then returns). Callable from any thread and from hooks;
/// harmless before `run` (the next `run` stops at once), and after it.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `NOT_IN_MASTER` (called in
/// a worker, which ends itself by returning from its `run`).
#[no_mangle]
pub extern "C" fn cotyledon_manager_shutdown(manager: *mut cotyledon_manager) -> cotyledon_result {
    ffi(|| Ok(master(manager)?.handle.shutdown()?))
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
        Ok(master(manager)?
            .handle
            .set_graceful_shutdown_timeout(Duration::from_millis(milliseconds))?)
    })
}

/// Registers a hook: checks the manager and the hook (not NULL), then
/// hands the hook to `add` with the handle hooks are added through.
fn add_hook<H>(
    manager: *mut cotyledon_manager,
    hook: Option<H>,
    add: impl FnOnce(&ManagerHandle, H) -> Result<(), cotyledon::Error>,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        let hook = hook.ok_or_else(|| Failure::null("hook"))?;
        add(m.hook_handle()?, hook)?;
        Ok(())
    })
}

fn add_plain_hook(
    manager: *mut cotyledon_manager,
    hook: cotyledon_hook,
    userdata: *mut c_void,
    reload: bool,
) -> cotyledon_result {
    let ud = Ptr(userdata);
    add_hook(manager, hook, |h, hook| {
        // SAFETY (in the closure): a hook the program registered, with its
        // userdata.
        let call = move || hook_result(unsafe { hook(ud.get()) });
        if reload {
            h.on_reload(call)
        } else {
            h.on_terminate(call)
        }
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

/// A reload check: may stop a reload. Return 0 to let it go on, or nonzero
/// to refuse it, after writing the reason (NUL-terminated UTF-8, e.g. with
/// `snprintf`) to `reason`, a buffer of `reason_size` bytes that starts
/// empty; an empty reason is reported as `reload check returned <rc>`.
pub type cotyledon_reload_check_hook = Option<
    unsafe extern "C" fn(userdata: *mut c_void, reason: *mut c_char, reason_size: usize) -> c_int,
>;

/// The size of the reason buffer a reload check gets.
const REASON_SIZE: usize = 512;

/// Adds a reload check: a hook run in the master on SIGHUP (and
/// `cotyledon_manager_reload`), in the thread running `run`, before the
/// reload hooks, that can stop the reload. Checks run in the order added;
/// the first that returns nonzero stops the reload: the remaining checks
/// and the reload hooks do not run, the workers get no SIGHUP, and the
/// master logs at ERROR `Reload refused by a reload check: <reason>`. When
/// every check returns 0, the reload goes on as usual. (A plain
/// `cotyledon_manager_on_reload` hook cannot stop a reload: its failure is
/// logged and the workers still get SIGHUP.)
///
/// ```c
/// static int check_config(void *userdata, char *reason, size_t reason_size) {
///     if (access("/etc/app.conf", R_OK) != 0) {
///         snprintf(reason, reason_size, "cannot read /etc/app.conf: %s", strerror(errno));
///         return 1;
///     }
///     return 0;
/// }
/// cotyledon_manager_on_reload_check(manager, check_config, NULL);
/// ```
///
/// Otherwise as `cotyledon_manager_on_terminate`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_on_reload_check(
    manager: *mut cotyledon_manager,
    hook: cotyledon_reload_check_hook,
    userdata: *mut c_void,
) -> cotyledon_result {
    let ud = Ptr(userdata);
    add_hook(manager, hook, |h, hook| {
        h.on_reload_check(move || {
            let mut reason = [0 as c_char; REASON_SIZE];
            // SAFETY: a hook the program registered, with its userdata and
            // a writable buffer of the size given.
            let rc = unsafe { hook(ud.get(), reason.as_mut_ptr(), REASON_SIZE) };
            if rc == 0 {
                return Ok(());
            }
            // NUL-terminated whatever the hook wrote.
            reason[REASON_SIZE - 1] = 0;
            // SAFETY: NUL-terminated within the buffer (just made sure).
            let text = unsafe { CStr::from_ptr(reason.as_ptr()) }.to_string_lossy();
            if text.is_empty() {
                Err(format!("reload check returned {rc}").into())
            } else {
                Err(text.into_owned().into())
            }
        })
    })
}

/// Writes the name service `service_id` was added with to `*out`: a
/// NUL-terminated UTF-8 string allocated by the library, that the caller
/// releases with `cotyledon_string_free`. For hooks, which get service ids.
/// Callable before, during (from any thread, and from hooks) and after
/// `run`, in the master.
///
/// ```c
/// static int on_dead(void *ud, uint64_t service_id, uint64_t worker_id, int status) {
///     char *name = NULL;
///     if (cotyledon_manager_service_name(manager, service_id, &name) == COTYLEDON_RESULT_OK) {
///         fprintf(stderr, "%s worker %llu ended: %d\n", name, (unsigned long long)worker_id, status);
///         cotyledon_string_free(name);
///     }
///     return 0;
/// }
/// ```
///
/// Errors: `NULL_PARAMETER` (`manager`, `out`), `INVALID_HANDLE`,
/// `UNKNOWN_SERVICE`, `IO` (out of memory).
#[no_mangle]
pub extern "C" fn cotyledon_manager_service_name(
    manager: *const cotyledon_manager,
    service_id: u64,
    out: *mut *mut c_char,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        out_ptr(out, "out")?;
        let id = ServiceId::from(service_id);
        let name = m
            .handle
            .service_name(id)
            .ok_or(cotyledon::Error::UnknownService(id))?;
        let s = malloc_string(&name)?;
        // SAFETY: non-NULL, writable (caller).
        unsafe { *out = s };
        Ok(())
    })
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
    let ud = Ptr(userdata);
    add_hook(manager, hook, |h, hook| {
        h.on_new_worker(move |sid, wid, _service| {
            let instance = service::worker_instance();
            // SAFETY: a hook the program registered, with its userdata.
            hook_result(unsafe { hook(ud.get(), sid.as_u64(), wid as u64, instance) })
        })
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
    let ud = Ptr(userdata);
    add_hook(manager, hook, |h, hook| {
        h.on_dead_worker(move |sid, wid, code| {
            // SAFETY: a hook the program registered, with its userdata.
            hook_result(unsafe { hook(ud.get(), sid.as_u64(), wid as u64, code) })
        })
    })
}

/// Writes the manager's status as JSON to `*out`: a NUL-terminated UTF-8
/// string on one line, allocated by the library, that the caller releases
/// with `cotyledon_string_free`.
///
/// The JSON is the status schema every face shares: what `cotyledon-ctl
/// status --json` prints and the control socket's `"status"` reply holds
/// (`COTYLEDON_PROTOCOL_VERSION` is its version). Its top-level members are
/// `pid` (the master's), `state` (`"starting"`, `"running"`,
/// `"reloading"`, `"stopping"`), `started_at` (Unix seconds), `limiter`
/// and `services`: one object per service in the order added, with `id`
/// (what `cotyledon_manager_add` wrote), `name`, `workers` (the configured
/// count), `running`, `counters` and `worker_list`, whose entries have
/// `worker_id`, `pid` (null while the worker is not running), `started_at`,
/// `restarts`, `last_exit` and `stopping`. New members may appear in later
/// versions; parse it with any JSON library and ignore the members you do
/// not know. Before `run` the services are listed with no running worker.
///
/// Callable before, during (from any thread, and from hooks) and after
/// `run`, in the master only.
///
/// ```c
/// char *json = NULL;
/// if (cotyledon_manager_status_json(manager, &json) == COTYLEDON_RESULT_OK) {
///     puts(json);  // {"pid":123,"state":"running","started_at":...,"services":[...],...}
///     cotyledon_string_free(json);
/// }
/// ```
///
/// Errors: `NULL_PARAMETER` (`manager`, `out`), `INVALID_HANDLE`, `IO`
/// (out of memory).
#[no_mangle]
pub extern "C" fn cotyledon_manager_status_json(
    manager: *const cotyledon_manager,
    out: *mut *mut c_char,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        out_ptr(out, "out")?;
        let json = serde_json::to_string(&m.handle.status()).map_err(|e| {
            Failure::new(
                cotyledon_result::Unknown,
                format!("status not serializable: {e}"),
            )
        })?;
        let s = malloc_string(&json)?;
        // SAFETY: non-NULL, writable (caller).
        unsafe { *out = s };
        Ok(())
    })
}

/// Reloads, as SIGHUP does: the reload checks then the reload hooks run in
/// the master (in the thread running `run`), the fork-rate limiter is reset
/// and every worker is told to reload (unless a check refused: see
/// `cotyledon_manager_on_reload_check`). Returns at once; the reload happens in `run`'s
/// thread. Callable from any thread and from hooks while `run` executes;
/// ignored before `run`, while stopping and after `run`.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_reload(manager: *mut cotyledon_manager) -> cotyledon_result {
    ffi(|| Ok(master(manager)?.handle.reload()?))
}

/// Restarts worker `worker_id` of service `service_id`: the worker gets
/// SIGTERM (a graceful stop, as for a worker above the count), then a new
/// process is forked with the same worker id. Returns at once. Callable
/// from any thread and from hooks while `run` executes.
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `UNKNOWN_SERVICE` (no such
/// service id), `NO_SUCH_WORKER` (the service has no running worker with
/// that id: the id is not below its worker count, the worker waits for its
/// respawn or is already stopping, or `run` is not executing).
#[no_mangle]
pub extern "C" fn cotyledon_manager_restart_worker(
    manager: *mut cotyledon_manager,
    service_id: u64,
    worker_id: u64,
) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
        let service = ServiceId::from(service_id);
        if m.handle.workers(service).is_none() {
            return Err(cotyledon::Error::UnknownService(service).into());
        }
        let restarted = match usize::try_from(worker_id) {
            Ok(worker) => m.handle.restart(service, worker)?,
            Err(_) => false,
        };
        if restarted {
            Ok(())
        } else {
            Err(Failure::new(
                cotyledon_result::NoSuchWorker,
                format!(
                    "service {service_id} has no running worker {worker_id} (or it is stopping)"
                ),
            ))
        }
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
/// When a service's restart policy stops the manager (see
/// `cotyledon_policy`), the stop is as graceful and `run` returns
/// `COTYLEDON_RESULT_STOPPED` (the last error message says why), or
/// `COTYLEDON_RESULT_OK` when the policy's status is 0;
/// `cotyledon_manager_exit_status` gives the status, for example:
///
/// ```c
/// cotyledon_result rc = cotyledon_manager_run(manager);
/// int status = 1;
/// if (rc == COTYLEDON_RESULT_OK || rc == COTYLEDON_RESULT_STOPPED)
///     cotyledon_manager_exit_status(manager, &status);
/// cotyledon_manager_free(manager);
/// return status;
/// ```
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `ALREADY_RUNNING`,
/// `INTERRUPTED`, `STOPPED`, `IO`.
#[no_mangle]
pub extern "C" fn cotyledon_manager_run(manager: *mut cotyledon_manager) -> cotyledon_result {
    ffi(|| {
        let m = master(manager)?;
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
        let status = match &result {
            Ok(()) => Some(0),
            Err(cotyledon::Error::Stopped { status, .. }) => Some(*status),
            Err(_) => None,
        };
        *m.exit_status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        Ok(result?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use crate::strings::cotyledon_string_free;

    /// A manager that may live beside others in this test process.
    fn test_manager() -> *mut cotyledon_manager {
        let mut c = std::ptr::null_mut();
        assert_eq!(cotyledon_config_new(&mut c), cotyledon_result::Ok);
        cotyledon_config_set_single_instance(c, false);
        cotyledon_config_set_session_leader(c, false);
        cotyledon_config_set_titles(c, 0);
        cotyledon_config_set_notify_systemd(c, false);
        let mut m = std::ptr::null_mut();
        assert_eq!(cotyledon_manager_new(c, &mut m), cotyledon_result::Ok);
        cotyledon_config_free(c);
        m
    }

    fn status(m: *const cotyledon_manager) -> serde_json::Value {
        let mut out = std::ptr::null_mut();
        assert_eq!(
            cotyledon_manager_status_json(m, &mut out),
            cotyledon_result::Ok
        );
        // SAFETY: the library's NUL-terminated string.
        let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
        cotyledon_string_free(out);
        assert!(!text.contains('\n'), "one line: {text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn status_json_before_run_lists_the_services() {
        let m = test_manager();
        let empty = cotyledon_service {
            create: None,
            run: None,
            terminate: None,
            reload: None,
            destroy: None,
        };
        let mut id = 0;
        let r = cotyledon_manager_add(m, c"web".as_ptr(), 3, &empty, std::ptr::null_mut(), &mut id);
        assert_eq!(r, cotyledon_result::Ok);
        let s = status(m);
        assert_eq!(s["pid"], std::process::id());
        assert_eq!(s["services"][0]["name"], "web");
        assert_eq!(s["services"][0]["id"], id);
        assert_eq!(s["services"][0]["workers"], 3);
        assert_eq!(s["services"][0]["running"], 0);
        // the JSON is the core's schema, field for field
        let back: cotyledon::status::Status = serde_json::from_value(s).unwrap();
        assert_eq!(back.services.len(), 1);

        let mut out = std::ptr::null_mut();
        let r = cotyledon_manager_status_json(m, std::ptr::null_mut());
        assert_eq!(r, cotyledon_result::NullParameter);
        let r = cotyledon_manager_status_json(std::ptr::null(), &mut out);
        assert_eq!(r, cotyledon_result::NullParameter);
        assert!(out.is_null());

        assert_eq!(
            cotyledon_manager_restart_worker(m, id + 1000, 0),
            cotyledon_result::UnknownService
        );
        // not running: no worker to restart
        assert_eq!(
            cotyledon_manager_restart_worker(m, id, 0),
            cotyledon_result::NoSuchWorker
        );
        assert_eq!(
            cotyledon_manager_restart_worker(m, id, u64::MAX),
            cotyledon_result::NoSuchWorker
        );
        assert_eq!(cotyledon_manager_reload(m), cotyledon_result::Ok);

        cotyledon_manager_free(m);
        assert_eq!(
            cotyledon_manager_status_json(m, &mut out),
            cotyledon_result::InvalidHandle
        );
        assert_eq!(cotyledon_manager_reload(m), cotyledon_result::InvalidHandle);
        assert_eq!(
            cotyledon_manager_restart_worker(m, id, 0),
            cotyledon_result::InvalidHandle
        );
        assert!(out.is_null());
    }
}
