//! `cotyledon._core`: the Python face of the cotyledon engine.
//!
//! The pure-Python package `cotyledon` composes an [`Engine`] in its
//! `ServiceManager`. The engine runs the master loop with the GIL released,
//! forks workers with the interpreter's cooperation, and calls back into a
//! Python "runtime" object (given to `run()`) for everything that is Python:
//! hooks, building services, the fork bookkeeping of stdio and logging, and
//! flushing output before a worker ends.

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cotyledon::bindings::{self, ForkCall, ForkOutcome, HookReported};
use cotyledon::{
    AppError, HookResult, InitMode, ManagerHandle, Service, ServiceId, ServiceManager,
    ServiceResult, Settings, TitleMode,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// pyo3-log's cache handle. Only logger objects are cached (levels are
/// asked each time, so an application changing them is obeyed at once);
/// reset whenever Python logging may have been reconfigured (a new worker,
/// a reload, the start of `run()`).
static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

fn reset_log_cache() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
}

/// The Python runtime object of the current `run()`, shared by the
/// callbacks the engine calls (hooks, fork step, factories, exit), and
/// what the fork step's fast path reads.
#[derive(Default)]
struct Slot {
    runtime: Mutex<Option<Py<PyAny>>>,
    fork_refs: Mutex<Option<ForkRefs>>,
    /// In a worker: its service's key and object, for the new-worker
    /// hooks. Kept here because a forked worker must not take the
    /// manager's lock (another master thread may have held it at the fork).
    service: Mutex<Option<(String, Py<PyAny>)>>,
    /// `gc.freeze` and friends when the manager freezes the collector's
    /// objects around each fork (`gc_freeze=True`); set once at creation.
    gc: OnceLock<GcRefs>,
}

impl Slot {
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let guard = lock(&self.runtime);
        guard.as_ref().map(|o| o.clone_ref(py))
    }
    fn set(&self, value: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        replace(&self.runtime, value)
    }
    fn set_fork_refs(&self, value: Option<ForkRefs>) -> Option<ForkRefs> {
        replace(&self.fork_refs, value)
    }
}

/// Locks `m`, poisoned or not: every value behind these locks is replaced
/// or updated in one step, so a panic elsewhere cannot leave one
/// half-written, and a hook's panic must not disable the manager.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts `value` in `cell` and returns what it held.
fn replace<T>(cell: &Mutex<Option<T>>, value: Option<T>) -> Option<T> {
    std::mem::replace(&mut *lock(cell), value)
}

/// The objects the fork step needs when the master has no other thread,
/// given by `runtime.fork_refs()` once per `run()`. Each page the master
/// writes before a fork is copied again after it, and a Python frame
/// writes many: this path runs none (about 20 page copies less per fork).
/// It also takes no new reference to what it only reads (a reference is a
/// write to the object's page): `sys.stdout`, `sys.stderr` and the
/// `multiprocessing` counter are looked up borrowed.
struct ForkRefs {
    /// `_thread._count`: threads started from Python still alive.
    thread_count: Py<PyAny>,
    /// `multiprocessing.process`, whose `_process_counter` numbers the
    /// workers as `multiprocessing` numbers its processes.
    mp_process: Py<PyAny>,
    /// `sys`, whose dict holds `stdout` and `stderr`.
    sys: Py<PyAny>,
    /// `io.TextIOWrapper`: the stream type whose `flush` is kept.
    text_io: Py<PyAny>,
    /// For `sys.stdout` and `sys.stderr`: the stream seen at the last fork
    /// and its bound `flush`, kept while that stream stays in `sys`.
    flushers: [Option<(Py<PyAny>, Py<PyAny>)>; 2],
}

impl ForkRefs {
    fn new(py: Python<'_>, thread_count: Py<PyAny>, mp_process: Py<PyAny>) -> PyResult<Self> {
        let text_io = py
            .import(intern!(py, "io"))?
            .getattr(intern!(py, "TextIOWrapper"))?
            .unbind();
        Ok(ForkRefs {
            thread_count,
            mp_process,
            sys: py.import(intern!(py, "sys"))?.into_any().unbind(),
            text_io,
            flushers: [None, None],
        })
    }

    /// Before a fork: when no other thread runs Python code, takes the
    /// worker's `multiprocessing` number and flushes stdio, and returns the
    /// number (or `None`); `Err(())` sends the fork to `runtime.prefork()`.
    fn prefork(&mut self, py: Python<'_>) -> Result<Py<PyAny>, ()> {
        let alone = self
            .thread_count
            .bind(py)
            .call0()
            .and_then(|n| n.extract::<usize>())
            .is_ok_and(|n| n == 0);
        if !alone {
            return Err(());
        }
        let identity = self.next_identity(py).unwrap_or_else(|| py.None());
        self.flush_stdio(py);
        Ok(identity)
    }

    /// `next(multiprocessing.process._process_counter)`.
    fn next_identity(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let counter = module_item(self.mp_process.bind(py), intern!(py, "_process_counter"))?;
        // SAFETY: attached (GIL held); `counter` is alive (the module's
        // dict holds it) and nothing ran Python code since it was looked
        // up. PyIter_Check only reads its type; PyIter_Next returns a new
        // reference (or NULL), owned by the Bound made from it, and an
        // exception it sets is cleared here.
        unsafe {
            if pyo3::ffi::PyIter_Check(counter.as_ptr()) == 0 {
                return None;
            }
            let next = Bound::from_owned_ptr_or_opt(py, pyo3::ffi::PyIter_Next(counter.as_ptr()));
            if next.is_none() {
                let _ = PyErr::take(py);
            }
            next.map(Bound::unbind)
        }
    }

    /// Flushes `sys.stdout` and `sys.stderr` (see [`flush_stdio`]). A
    /// stream that is a plain `io.TextIOWrapper` keeps its bound `flush`
    /// from one fork to the next while it stays in `sys`: no attribute
    /// lookup, so no reference taken, per fork.
    fn flush_stdio(&mut self, py: Python<'_>) {
        let sys = self.sys.bind(py);
        let names = [intern!(py, "stdout"), intern!(py, "stderr")];
        for (name, kept) in names.into_iter().zip(&mut self.flushers) {
            let Some(stream) = module_item(sys, name).filter(|s| !s.is_none()) else {
                *kept = None;
                continue;
            };
            match kept {
                Some((seen, flush)) if seen.as_ptr() == stream.as_ptr() => {
                    // As the interpreter does at exit: a stream that cannot
                    // be flushed is not the fork's business.
                    let _ = flush.bind(py).call0();
                }
                _ => {
                    // A reference of our own first: the stream's Python
                    // code may take it out of `sys`.
                    let stream = stream.to_owned();
                    let flush = stream.getattr(intern!(py, "flush"));
                    if let Ok(flush) = &flush {
                        let _ = flush.call0();
                    }
                    // Only the interpreter's own stream type: its `flush`
                    // is a method of the type, so the bound one stays
                    // right; any other stream is asked each time.
                    *kept = match flush {
                        Ok(flush) if stream.get_type().is(self.text_io.bind(py)) => {
                            Some((stream.unbind(), flush.unbind()))
                        }
                        _ => None,
                    };
                }
            }
        }
    }
}

/// `module.<name>` as found in the module's dict, borrowed: no reference
/// taken (each would write to the object's page), no string made for the
/// name (an interned one is given). `None` when absent or on error.
fn module_item<'a, 'py>(
    module: &'a Bound<'py, PyAny>,
    name: &Bound<'py, pyo3::types::PyString>,
) -> Option<pyo3::Borrowed<'a, 'py, PyAny>> {
    let py = module.py();
    // SAFETY: attached (GIL held). PyModule_GetDict and
    // PyDict_GetItemWithError return borrowed references (or NULL); the
    // item stays alive while the module's dict holds it, and the returned
    // `Borrowed` cannot outlive `module` (lifetime 'a) nor be used after
    // this thread detaches. An exception either sets is cleared here.
    unsafe {
        let dict = pyo3::ffi::PyModule_GetDict(module.as_ptr());
        if dict.is_null() {
            let _ = PyErr::take(py);
            return None;
        }
        let item = pyo3::ffi::PyDict_GetItemWithError(dict, name.as_ptr());
        if item.is_null() {
            let _ = PyErr::take(py);
            return None;
        }
        Some(pyo3::Borrowed::from_ptr(py, item))
    }
}

/// The collector's freeze, for forks: before each fork the master moves
/// every object the collector tracks to its permanent generation, so a
/// worker's collections never walk (and so never write, page by page, to
/// the copy-on-write pages of) what it inherited; right after the fork
/// the master moves them back (to its oldest generation), so its own
/// garbage is still collected.
struct GcRefs {
    freeze: Py<PyAny>,
    unfreeze: Py<PyAny>,
    get_freeze_count: Py<PyAny>,
}

impl GcRefs {
    fn new(py: Python<'_>) -> PyResult<Self> {
        let gc = py.import(intern!(py, "gc"))?;
        Ok(GcRefs {
            freeze: gc.getattr(intern!(py, "freeze"))?.unbind(),
            unfreeze: gc.getattr(intern!(py, "unfreeze"))?.unbind(),
            get_freeze_count: gc.getattr(intern!(py, "get_freeze_count"))?.unbind(),
        })
    }

    /// Freezes before a fork; true when it did. An application that froze
    /// objects itself keeps its own freeze: the engine then leaves the
    /// collector alone (its unfreeze would release the application's).
    fn freeze(&self, py: Python<'_>) -> bool {
        let frozen = self
            .get_freeze_count
            .bind(py)
            .call0()
            .and_then(|n| n.extract::<usize>());
        if !matches!(frozen, Ok(0)) {
            return false;
        }
        self.freeze.bind(py).call0().is_ok()
    }

    /// In the master, after the fork: what `freeze` froze is collected
    /// again.
    fn unfreeze(&self, py: Python<'_>) {
        if let Err(e) = self.unfreeze.bind(py).call0() {
            report(py, e);
        }
    }
}

/// Flushes `sys.stdout` and `sys.stderr` before a fork, so that the child
/// does not inherit (and later write again) what the parent had buffered.
fn flush_stdio(sys: &Bound<'_, PyAny>) {
    let py = sys.py();
    for name in [intern!(py, "stdout"), intern!(py, "stderr")] {
        if let Ok(stream) = sys.getattr(name) {
            if !stream.is_none() {
                // As the interpreter does at exit: a stream that cannot be
                // flushed is not the fork's business.
                let _ = stream.call_method0(intern!(py, "flush"));
            }
        }
    }
}

/// Reports an exception the Python side did not handle, without ever
/// ending the process (`PyErr_Print` would exit on `SystemExit`).
fn report(py: Python<'_>, e: PyErr) {
    e.write_unraisable(py, None);
}

/// Calls `runtime.<name>(*args)`; a failure is reported as unraisable (the
/// runtime's methods catch and log what they can themselves).
fn call_runtime<'py, A>(
    py: Python<'py>,
    slot: &Slot,
    name: &str,
    args: A,
) -> Option<Bound<'py, PyAny>>
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let rt = slot.get(py)?;
    match rt.bind(py).call_method1(name, args) {
        Ok(v) => Some(v),
        Err(e) => {
            report(py, e);
            None
        }
    }
}

/// A Python thread state kept for the life of a worker thread.
///
/// The worker's run and callbacks threads are Rust threads. Attaching one
/// that has no Python thread state creates a state and deletes it again on
/// detach: an `mmap` and a `munmap` of its frame stack every time, and the
/// `munmap` costs a TLB shootdown across the worker's threads. Every SIGHUP
/// paid that in every worker. The first call on such a thread makes a state
/// that stays (its GIL released) until the thread ends.
struct PinnedThreadState {
    gil: pyo3::ffi::PyGILState_STATE,
    tstate: *mut pyo3::ffi::PyThreadState,
}

impl PinnedThreadState {
    /// Pins a thread state on the current thread unless it has one. Must be
    /// called without the GIL (the worker threads never hold it here).
    fn pin() {
        PINNED.with(|pinned| {
            if pinned.borrow().is_some() {
                return;
            }
            // SAFETY: the interpreter is initialized (this is a worker forked
            // from a running one) and this thread does not hold the GIL; the
            // state is released in Drop, on this same thread.
            let state = unsafe {
                let gil = pyo3::ffi::PyGILState_Ensure();
                let tstate = pyo3::ffi::PyEval_SaveThread();
                PinnedThreadState { gil, tstate }
            };
            *pinned.borrow_mut() = Some(state);
        });
    }
}

impl Drop for PinnedThreadState {
    fn drop(&mut self) {
        // SAFETY: pairs with pin(), on the thread that pinned (thread-local
        // destructor); the GIL is not held by this thread here.
        unsafe {
            pyo3::ffi::PyEval_RestoreThread(self.tstate);
            pyo3::ffi::PyGILState_Release(self.gil);
        }
    }
}

thread_local! {
    static PINNED: std::cell::RefCell<Option<PinnedThreadState>> =
        const { std::cell::RefCell::new(None) };
}

/// A Python service object living in a worker. Its methods are called
/// through the runtime's `call_service(service, name)`, which logs failures
/// and returns `None` (keep going) or the exit status.
struct PyService {
    obj: Py<PyAny>,
    caller: Py<PyAny>,
    timeout: Option<Duration>,
}

impl PyService {
    fn call(&self, method: &str) -> ServiceResult {
        PinnedThreadState::pin();
        Python::attach(
            |py| match self.caller.bind(py).call1((self.obj.bind(py), method)) {
                Ok(v) if v.is_none() => Ok(()),
                Ok(v) => Err(AppError::exit(v.extract::<i32>().unwrap_or(1))),
                Err(e) => {
                    report(py, e);
                    Err(AppError::exit(2))
                }
            },
        )
    }
}

impl Service for PyService {
    fn run(&self) -> ServiceResult {
        self.call("run")
    }
    fn terminate(&self) -> ServiceResult {
        self.call("terminate")
    }
    fn reload(&self) -> ServiceResult {
        self.call("reload")
    }
    fn graceful_shutdown_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::from_secs_f64(value)
    } else {
        Duration::ZERO
    }
}

/// A path setting (`str` or `os.PathLike`): `None` stays `None`; another
/// type or an empty path is refused, naming the argument.
fn checked_path(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<PathBuf>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let path: PathBuf = value.extract().map_err(|_| {
        let kind = value
            .get_type()
            .name()
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "'{name}' must be a str or os.PathLike, not: {kind}"
        ))
    })?;
    if path.as_os_str().is_empty() {
        return Err(PyValueError::new_err(format!(
            "'{name}' must not be an empty path"
        )));
    }
    Ok(Some(path))
}

/// The core's error as Cotyledon raises it: the Rust messages are the Rust
/// and C faces' own, so the texts Python users know are made here.
fn core_error(e: cotyledon::Error) -> PyErr {
    match e {
        cotyledon::Error::InvalidWorkers { .. } => workers_error(e, "int"),
        cotyledon::Error::UnknownService(id) => {
            PyValueError::new_err(format!("{id} service id doesn't exists"))
        }
        cotyledon::Error::AlreadyCreated => PyRuntimeError::new_err(
            "Only one instance of ServiceManager per application is allowed",
        ),
        cotyledon::Error::AlreadyRunning => {
            PyRuntimeError::new_err("ServiceManager.run() was already called")
        }
        cotyledon::Error::Interrupted => {
            PyRuntimeError::new_err("ServiceManager.run() was interrupted")
        }
        cotyledon::Error::InvalidSetting(_) => PyValueError::new_err(e.to_string()),
        cotyledon::Error::Io(err) => PyOSError::new_err(err.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// Forks a worker as CPython's `os.fork()` does, without its Python-level
/// warnings: stdio flushed (and logging handler locks held, when other
/// threads run) by the runtime's `prefork()`, then `PyOS_BeforeFork`,
/// `fork`, `PyOS_AfterFork_*`. Runs attached (GIL held) on the thread that
/// called `run()` (the main thread).
/// The engine blocks every signal around this step and renews its
/// self-pipe in the child.
/// True while the engine forks a worker (the interpreter's at-fork hooks
/// run then too): what tells the Python face's at-fork hook a worker from
/// a process the application forked.
static ENGINE_FORK: AtomicBool = AtomicBool::new(false);
/// True while `Engine.run()` runs, in the master and (inherited) in its
/// workers.
static ENGINE_RUNNING: AtomicBool = AtomicBool::new(false);

fn fork_step(slot: &Slot, fork: ForkCall<'_>) -> io::Result<ForkOutcome> {
    ENGINE_FORK.store(true, Ordering::Relaxed);
    let forked = fork_step_attached(slot, fork);
    ENGINE_FORK.store(false, Ordering::Relaxed);
    forked
}

fn fork_step_attached(slot: &Slot, fork: ForkCall<'_>) -> io::Result<ForkOutcome> {
    Python::attach(|py| {
        let fast = {
            let mut refs = lock(&slot.fork_refs);
            refs.as_mut().and_then(|r| r.prefork(py).ok())
        };
        let parent_pid = std::process::id();
        let held = match fast {
            Some(_) => None,
            None => match slot.get(py) {
                Some(rt) => {
                    let held = rt.bind(py).call_method0("prefork").map_err(|e| {
                        report(py, e);
                        io::Error::other("preparing the fork failed")
                    })?;
                    Some((rt, held.unbind()))
                }
                // No run() yet: the split at creation (the init stays
                // behind, never to run Python again). Only stdio needs
                // flushing; the logging module's own at-fork hooks run in
                // PyOS_*Fork.
                None => {
                    if let Ok(sys) = py.import(intern!(py, "sys")) {
                        flush_stdio(sys.as_any());
                    }
                    None
                }
            },
        };
        // After prefork(): nothing Python allocates from here to the fork
        // is left in a young generation.
        let gc = slot.gc.get();
        let froze = gc.is_some_and(|g| g.freeze(py));
        // SAFETY: attached (GIL held), on the thread that owns the
        // interpreter's main thread state; one of the two After calls below
        // follows on every path, with only the engine's fork in between,
        // except in the init split off at creation: there `fork()` never
        // returns (that process never runs Python again, keeps the GIL and
        // ends with _exit).
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        let forked = fork();
        if let Ok(ForkOutcome::Child) = forked {
            // SAFETY: in the new process, still attached: the thread state
            // PyOS_BeforeFork saw is this thread's, which the child keeps.
            unsafe { pyo3::ffi::PyOS_AfterFork_Child() };
            let done = match (held, fast) {
                (Some((rt, held)), _) => rt.bind(py).call_method1("postfork_child", (held,)),
                // The state runtime.prefork() returns when it takes no lock.
                (None, identity) => match slot.get(py) {
                    Some(rt) => rt.bind(py).call_method1(
                        "postfork_child",
                        ((PyTuple::empty(py), identity, parent_pid, false),),
                    ),
                    None => Ok(py.None().into_bound(py)),
                },
            };
            if let Err(e) = done {
                report(py, e);
            }
            return Ok(ForkOutcome::Child);
        }
        // SAFETY: in the master (or after a failed fork), still attached,
        // pairing with PyOS_BeforeFork above.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() };
        if froze {
            if let Some(g) = gc {
                g.unfreeze(py);
            }
        }
        // Nothing to release when prefork() took no lock (the master had no
        // other thread): skip the call, whose pages would be copied again.
        if let Some((rt, held)) = held {
            let held = held.bind(py);
            let took_locks = held
                .get_item(0)
                .and_then(|locks| locks.len())
                .map_or(true, |n| n > 0);
            if took_locks {
                if let Err(e) = rt.bind(py).call_method1("postfork_parent", (held,)) {
                    report(py, e);
                }
            }
        }
        forked
    })
}

/// The engine behind `cotyledon.ServiceManager`.
#[pyclass(module = "cotyledon._core", name = "Engine")]
struct Engine {
    manager: Mutex<Option<ServiceManager>>,
    handle: ManagerHandle,
    slot: Arc<Slot>,
    wakeup_fd: i32,
}

impl Engine {
    /// The engine's id of the service known to Python as `key`.
    /// Runs `f` on the core manager, before `run()` took it.
    fn with_manager<R>(&self, f: impl FnOnce(&mut ServiceManager) -> PyResult<R>) -> PyResult<R> {
        let mut guard = lock(&self.manager);
        let manager = guard
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("ServiceManager.run() was already called"))?;
        f(manager)
    }

    fn service(&self, key: &str) -> PyResult<ServiceId> {
        bindings::service_of_key(&self.handle, key)
            .ok_or_else(|| PyValueError::new_err(format!("{key} service id doesn't exists")))
    }
}

/// What a Python hook's call gives the engine: a failure the hook logged
/// itself (`_hooks.call` returned False) stops the event's other hooks.
fn hook_outcome(py: Python<'_>, called: PyResult<Bound<'_, PyAny>>) -> HookResult {
    match called {
        Ok(v) if v.is_truthy().unwrap_or(false) => Ok(()),
        Ok(_) => Err(HookReported.into()),
        Err(e) => {
            report(py, e);
            Err(HookReported.into())
        }
    }
}

/// A count the engine refused, in Python's words: the message names the
/// Python type of the value given.
fn workers_error(e: cotyledon::Error, type_name: &str) -> PyErr {
    match e {
        cotyledon::Error::InvalidWorkers { minimum, given, .. } if given < minimum => {
            PyValueError::new_err(format!(
                "'workers' must be an int >= {minimum}, not: {given} ({type_name})"
            ))
        }
        // Above the engine's MAX_WORKERS (the reference has no bound).
        cotyledon::Error::InvalidWorkers { maximum, given, .. } => PyValueError::new_err(format!(
            "'workers' must be an int <= {maximum}, not: {given} ({type_name})"
        )),
        other => core_error(other),
    }
}

#[pymethods]
impl Engine {
    /// `Engine(wait_interval, graceful_shutdown_timeout, *, control_socket,
    /// metrics_file, metrics_interval, init, kill_grace)`: creates the core
    /// manager (session leader, no title handling: Python sets titles).
    /// `control_socket` and `metrics_file` (str or os.PathLike) set the
    /// core's settings; when `None`, `COTYLEDON_CONTROL_SOCKET` /
    /// `COTYLEDON_METRICS_FILE` are read when `run()` starts. `init`: `None`
    /// splits off an init only as PID 1 (or as `COTYLEDON_INIT` says),
    /// `True` always, `False` never; when it splits, this returns in the
    /// new process (the master) only. `kill_grace` (seconds, 0 or more) is
    /// `Settings::kill_grace`. `gc_freeze`: freeze the collector's objects
    /// around each fork of a worker (`gc.freeze()` before, `gc.unfreeze()`
    /// after, in the master), unless the application froze some itself.
    /// `worker=True`: the engine of a worker
    /// started in a new program (see `run_worker`): no session, no init.
    #[new]
    #[pyo3(signature = (
        wait_interval=0.01,
        graceful_shutdown_timeout=60.0,
        *,
        control_socket=None,
        metrics_file=None,
        metrics_interval=15.0,
        init=None,
        kill_grace=0.5,
        gc_freeze=false,
        worker=false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        wait_interval: f64,
        graceful_shutdown_timeout: f64,
        control_socket: Option<&Bound<'_, PyAny>>,
        metrics_file: Option<&Bound<'_, PyAny>>,
        metrics_interval: f64,
        init: Option<bool>,
        kill_grace: f64,
        gc_freeze: bool,
        worker: bool,
    ) -> PyResult<Self> {
        let mut settings = Settings::default();
        settings.wait_interval = seconds(wait_interval);
        settings.graceful_shutdown_timeout = seconds(graceful_shutdown_timeout);
        settings.single_instance = false;
        // A worker started in a new program stays in the master's session.
        settings.session_leader = !worker;
        // Cotyledon calls setsid() whatever the terminal.
        settings.keep_terminal = false;
        settings.titles = TitleMode::Off;
        settings.control_socket = checked_path(control_socket, "control_socket")?;
        settings.metrics_file = checked_path(metrics_file, "metrics_file")?;
        settings.metrics_interval = Duration::try_from_secs_f64(metrics_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "'metrics_interval' must be a positive number of seconds, not: {metrics_interval}"
                ))
            })?;
        settings.init = match init {
            _ if worker => InitMode::Never,
            None => InitMode::Auto,
            Some(true) => InitMode::Always,
            Some(false) => InitMode::Never,
        };
        settings.kill_grace = Duration::try_from_secs_f64(kill_grace).map_err(|_| {
            PyValueError::new_err(format!(
                "'kill_grace' must be a non-negative finite number of seconds, not: {kill_grace}"
            ))
        })?;
        let slot = Arc::new(Slot::default());
        // Every fork goes through fork_step, the split at creation included.
        let s = Arc::clone(&slot);
        let mut manager = bindings::with_fork_wrapper(settings, move |fork| fork_step(&s, fork))
            .map_err(core_error)?;
        // Calls from workers and shutdown()'s records as in Cotyledon.
        bindings::reference_behaviour(&mut manager);
        let s = Arc::clone(&slot);
        bindings::set_on_exit(&mut manager, move |code| {
            Python::attach(|py| {
                call_runtime(py, &s, "flush", (code,));
            });
        });
        if gc_freeze {
            // Set after the split at creation: the init never runs Python
            // again.
            let _ = slot.gc.set(GcRefs::new(py)?);
        }
        let handle = manager.handle();
        let wakeup_fd = bindings::wakeup_fd(&manager);
        Ok(Engine {
            manager: Mutex::new(Some(manager)),
            handle,
            slot,
            wakeup_fd,
        })
    }

    /// Adds a service of `workers` workers named `name`, known to Python
    /// as `key` (its `uuid.UUID`, as text); returns the engine's id. The
    /// engine checks the count (`type_name` names the Python type in its
    /// message). Each worker builds its service with
    /// `runtime.build(key, worker_id)`.
    fn add(&self, name: String, workers: i64, key: String, type_name: &str) -> PyResult<u64> {
        let slot = Arc::clone(&self.slot);
        let k = key.clone();
        let id = self.with_manager(|manager| {
            bindings::add_with_key(manager, name, workers, key, move |me| {
                build_service(&slot, &k, me.worker_id)
            })
            .map_err(|e| workers_error(e, type_name))
        })?;
        Ok(id.as_u64())
    }

    /// Changes the worker count of the service known as `key`; the engine
    /// checks the range.
    fn reconfigure(&self, key: &str, workers: i64, type_name: &str) -> PyResult<()> {
        let id = self.service(key)?;
        self.handle
            .reconfigure(id, workers)
            .map_err(|e| workers_error(e, type_name))
    }

    /// Sets the restart policy of the service known as `key`, before
    /// `run()`: `restart` is `"always"`, `"on-failure"` or `"never"`;
    /// `backoff` is `(base, max, jitter, stable)` in seconds, `give_up`
    /// `(failures, window)` (the Python package checks the types). Raises
    /// `ValueError` with the core's reason for a policy it refuses.
    #[pyo3(signature = (key, restart, stop_on_exit, backoff=None, give_up=None))]
    fn set_policy(
        &self,
        key: &str,
        restart: &str,
        stop_on_exit: bool,
        backoff: Option<(f64, f64, f64, f64)>,
        give_up: Option<(u32, f64)>,
    ) -> PyResult<()> {
        let id = self.service(key)?;
        let bad = |e: cotyledon::Error| PyValueError::new_err(e.to_string());
        let secs = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v).map_err(|_| {
                PyValueError::new_err(format!(
                    "'{name}' must be a finite number of seconds >= 0, not: {v}"
                ))
            })
        };
        let mut policy = cotyledon::ServicePolicy::default()
            .restart(restart.parse().map_err(bad)?)
            .stop_on_exit(stop_on_exit);
        if let Some((base, max, jitter, stable)) = backoff {
            policy = policy.backoff(
                cotyledon::Backoff::new(secs("base", base)?, secs("max", max)?)
                    .jitter(jitter)
                    .stable(secs("stable", stable)?),
            );
        }
        if let Some((failures, window)) = give_up {
            policy = policy.give_up(cotyledon::GiveUp::new(failures, secs("window", window)?));
        }
        self.with_manager(|manager| {
            manager.set_policy(id, policy).map_err(|e| match e {
                cotyledon::Error::InvalidPolicy(_) => bad(e),
                other => core_error(other),
            })
        })
    }

    /// Starts the workers of the service known as `key` in a new program
    /// (the `spawn` and `forkserver` start methods): the engine forks each
    /// one as any worker, then, in the child, calls
    /// `runtime.exec_worker(key, identity)`, which replaces the process
    /// with a fresh interpreter that calls `run_worker(identity, ...)`.
    /// Before `run()`.
    fn set_exec(&self, key: &str) -> PyResult<()> {
        let id = self.service(key)?;
        let slot = Arc::clone(&self.slot);
        let key = key.to_string();
        self.with_manager(|manager| {
            manager
                .set_exec(id, move |identity| {
                    Python::attach(|py| {
                        // Returns only when the exec failed (reported there).
                        call_runtime(py, &slot, "exec_worker", (&key, identity.to_string()));
                    });
                    io::Error::other("the new interpreter could not be started")
                })
                .map_err(core_error)
        })
    }

    /// In a fresh interpreter a worker was started in (see `set_exec`):
    /// runs this process as the worker `identity` (the text the master's
    /// engine gave) names, with the engine's worker protocol; the engine
    /// holds the one service, added as in the master, and its new-worker
    /// hooks. `runtime` receives the callbacks (`build`, `flush`,
    /// `signal_handler_failed`). Never returns once the worker runs;
    /// raises `ValueError` for an identity that cannot be used.
    fn run_worker(&self, py: Python<'_>, identity: &str, runtime: Py<PyAny>) -> PyResult<()> {
        let identity: cotyledon::WorkerHandover = identity
            .parse()
            .map_err(|e: cotyledon::Error| PyValueError::new_err(e.to_string()))?;
        let mut manager = lock(&self.manager)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("ServiceManager.run() was already called"))?;
        let error: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
        let wake = on_wakeup(
            Arc::clone(&self.slot),
            error,
            manager.handle(),
            identity.master as u32,
        );
        bindings::set_on_wakeup(&mut manager, wake);
        reset_log_cache();
        self.slot.set(Some(runtime));
        ENGINE_RUNNING.store(true, Ordering::Relaxed);
        let failed = py.detach(move || match manager.run_worker(&identity) {
            Ok(never) => match never {},
            Err(e) => e,
        });
        ENGINE_RUNNING.store(false, Ordering::Relaxed);
        drop(self.slot.set(None));
        Err(match failed {
            e @ cotyledon::Error::InvalidWorkerHandover(_) => PyValueError::new_err(e.to_string()),
            e => core_error(e),
        })
    }

    /// The configured worker count of the service known as `key`.
    fn workers(&self, key: &str) -> PyResult<i64> {
        let id = self.service(key)?;
        self.handle
            .workers(id)
            .ok_or_else(|| core_error(cotyledon::Error::UnknownService(id)))
    }

    /// Registers `hook` as an engine hook of `event` (`terminate`,
    /// `reload`, `new_worker` or `dead_worker`), after those added before;
    /// also while `run()` runs.
    fn add_hook(&self, py: Python<'_>, event: &str, hook: Py<PyAny>) -> PyResult<()> {
        let hooks = py.import("cotyledon._hooks")?.unbind();
        let added = match event {
            "terminate" => self.handle.on_terminate(move || {
                Python::attach(|py| {
                    hook_outcome(
                        py,
                        hooks.bind(py).call_method1("call", ("terminate", &hook)),
                    )
                })
            }),
            "reload" => self.handle.on_reload(move || {
                Python::attach(|py| {
                    let done =
                        hook_outcome(py, hooks.bind(py).call_method1("call", ("reload", &hook)));
                    // The hook may have reconfigured logging.
                    reset_log_cache();
                    done
                })
            }),
            "dead_worker" => {
                let handle = self.handle.clone();
                self.handle.on_dead_worker(move |sid, wid, code| {
                    let key = bindings::service_key(&handle, sid);
                    Python::attach(|py| {
                        hook_outcome(
                            py,
                            hooks
                                .bind(py)
                                .call_method1("dead_worker", (&hook, key, wid, code)),
                        )
                    })
                })
            }
            "new_worker" => {
                let slot = Arc::clone(&self.slot);
                // Runs in the new worker: what it needs is in its own slot.
                self.handle.on_new_worker(move |_, wid, _| {
                    Python::attach(|py| {
                        let (key, service) = match lock(&slot.service).as_ref() {
                            Some((key, obj)) => (Some(key.clone()), obj.clone_ref(py)),
                            None => (None, py.None()),
                        };
                        hook_outcome(
                            py,
                            hooks
                                .bind(py)
                                .call_method1("new_worker", (&hook, key, wid, service)),
                        )
                    })
                })
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown hook event {other:?}"
                )));
            }
        };
        added.map_err(core_error)
    }

    /// The master's status as JSON (the schema of `cotyledon.status`).
    fn status_json(&self) -> String {
        serde_json::to_string(&self.handle.status()).unwrap_or_default()
    }

    /// Starts a graceful shutdown; returns at once; harmless when repeated.
    fn shutdown(&self, py: Python<'_>) {
        let handle = self.handle.clone();
        // Logging goes through Python: keep the GIL free for it.
        // With the reference's behaviour, shutdown() cannot fail.
        py.detach(move || {
            let _ = handle.shutdown();
        });
    }

    /// The manager's graceful shutdown timeout, in seconds (0 = forever).
    #[getter]
    fn get_graceful_shutdown_timeout(&self) -> f64 {
        self.handle.graceful_shutdown_timeout().as_secs_f64()
    }

    #[setter]
    fn set_graceful_shutdown_timeout(&self, value: f64) {
        let _ = self.handle.set_graceful_shutdown_timeout(seconds(value));
    }

    /// Forgets the fork-rate limiter's history (as a reconfigure does).
    fn reset_fork_limiter(&self) {
        let _ = self.handle.reset_limiter();
    }

    /// The write end of the engine's self-pipe (for `signal.set_wakeup_fd`).
    fn wakeup_fd(&self) -> i32 {
        self.wakeup_fd
    }

    /// Runs the master loop until a graceful shutdown, with the GIL
    /// released. `runtime` receives the callbacks. Returns the exit status
    /// after a graceful shutdown: 0, or the status a restart policy stopped
    /// the manager with; raises what an application signal handler raised.
    fn run(&self, py: Python<'_>, runtime: Py<PyAny>) -> PyResult<i32> {
        let mut manager = lock(&self.manager)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("ServiceManager.run() was already called"))?;
        let master = std::process::id();
        let error: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
        let wake = on_wakeup(
            Arc::clone(&self.slot),
            Arc::clone(&error),
            manager.handle(),
            master,
        );
        bindings::set_on_wakeup(&mut manager, wake);
        reset_log_cache();
        let _ = emit_fn(py);
        let refs = runtime
            .bind(py)
            .call_method0("fork_refs")
            .and_then(|r| {
                if r.is_none() {
                    return Ok(None);
                }
                let (thread_count, mp_process) = r.extract()?;
                ForkRefs::new(py, thread_count, mp_process).map(Some)
            })
            .unwrap_or_else(|e| {
                report(py, e);
                None
            });
        self.slot.set_fork_refs(refs);
        self.slot.set(Some(runtime));
        ENGINE_RUNNING.store(true, Ordering::Relaxed);
        let (manager, result) = py.detach(move || {
            let r = manager.run();
            (manager, r)
        });
        ENGINE_RUNNING.store(false, Ordering::Relaxed);
        let old = self.slot.set(None);
        let old_refs = self.slot.set_fork_refs(None);
        drop(manager);
        drop(old);
        drop(old_refs);
        match result {
            Ok(()) => Ok(0),
            Err(cotyledon::Error::Stopped { status, .. }) => Ok(status),
            Err(cotyledon::Error::Interrupted) => {
                let stored = lock(&error).take();
                Err(stored.unwrap_or_else(|| {
                    PyRuntimeError::new_err("ServiceManager.run() was interrupted")
                }))
            }
            Err(e) => Err(core_error(e)),
        }
    }
}

/// The wake-up callback of a master (pid `master`) and of its workers:
/// in the master, the first call tells the runtime the engine started;
/// everywhere, it runs the application's own signal handlers. What one
/// raises stops the master (kept in `err` for `run()` to raise) or ends
/// the worker with the status the runtime gives.
fn on_wakeup(
    slot: Arc<Slot>,
    err: Arc<Mutex<Option<PyErr>>>,
    handle: ManagerHandle,
    master: u32,
) -> impl FnMut() -> Option<i32> + Send + 'static {
    let mut started = false;
    move || {
        Python::attach(|py| {
            let in_master = std::process::id() == master;
            if !started && in_master {
                started = true;
                // READY=1 went: NOTIFY_SOCKET leaves os.environ, as
                // the contract says (the engine never touches the
                // master's C environment; workers never inherit it).
                let told = bindings::told_systemd_ready(&handle);
                call_runtime(py, &slot, "started", (told,));
            }
            match py.check_signals() {
                Ok(()) => None,
                Err(e) if in_master => {
                    *lock(&err) = Some(e);
                    Some(1)
                }
                Err(e) => {
                    let code =
                        call_runtime(py, &slot, "signal_handler_failed", (e.into_value(py),))
                            .and_then(|v| v.extract::<i32>().ok())
                            .unwrap_or(1);
                    Some(code)
                }
            }
        })
    }
}

/// In a new worker: `runtime.build(key, worker_id)` returns either an exit
/// status (the service could not be built: already reported) or
/// `(service, call_service, graceful_shutdown_timeout)`.
fn build_service(slot: &Slot, key: &str, worker_id: usize) -> Result<PyService, AppError> {
    Python::attach(|py| {
        let built = call_runtime(py, slot, "build", (key, worker_id));
        reset_log_cache();
        let Some(built) = built else {
            return Err(AppError::exit(1));
        };
        if let Ok(code) = built.extract::<i32>() {
            return Err(AppError::exit(code));
        }
        let parsed: PyResult<(Py<PyAny>, Py<PyAny>, Option<f64>)> = built.extract();
        match parsed {
            Ok((obj, caller, timeout)) => Ok(PyService {
                obj: {
                    // For the new-worker hooks, which the engine runs next.
                    *lock(&slot.service) = Some((key.to_string(), obj.clone_ref(py)));
                    obj
                },
                caller,
                timeout: timeout.map(seconds),
            }),
            Err(e) => {
                report(py, e);
                Err(AppError::exit(1))
            }
        }
    })
}

/// In a worker: tells the master that the worker's coming exit is a
/// restart (the default `Service.reload()` calls it before it sends the
/// worker SIGTERM). Does nothing outside a worker.
#[pyfunction]
fn announce_restart() {
    cotyledon::announce_restart();
}

/// In a new process, from an at-fork hook: whether the application forked
/// it (`os.fork()`, `multiprocessing`, ...) from a master or worker whose
/// engine runs, rather than the engine forking a worker.
#[pyfunction]
fn forked_by_application() -> bool {
    ENGINE_RUNNING.load(Ordering::Relaxed) && !ENGINE_FORK.load(Ordering::Relaxed)
}

/// Resets pyo3-log's cache of Python loggers and levels.
#[pyfunction]
#[pyo3(name = "reset_log_cache")]
fn py_reset_log_cache() {
    reset_log_cache();
}

/// `cotyledon-ctl` with the argument list `args` (without the program
/// name): the Rust CLI itself, writing to the process's stdout and stderr
/// (file descriptors 1 and 2, not `sys.stdout`); returns its exit code. The
/// GIL is released meanwhile (it waits on the socket, up to 5 s).
#[pyfunction]
fn ctl_main(py: Python<'_>, args: Vec<String>) -> i32 {
    py.detach(move || {
        let code = cotyledon::ctl::main(args);
        // No Rust runtime flushes them at exit in an extension module.
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        code
    })
}

/// Forwards the engine's records to Python logging (pyo3-log), in the
/// reference's words where the engine's differ: a worker killed by a signal
/// is `Child <pid> killed by signal <negative exit code>` there (the
/// reference looks the name up with the negative code and falls back to the
/// number), where the Rust face names the signal.
struct Bridge {
    inner: pyo3_log::Logger,
}

impl Bridge {
    fn reference_wording(record: &log::Record<'_>) -> Option<String> {
        if record.target() != cotyledon::logging::MANAGER {
            return None;
        }
        let text = record.args().to_string();
        let (head, name) = text.split_once(" killed by signal ")?;
        if !head.starts_with("Child ") {
            return None;
        }
        let number = (1..=64).find(|n| cotyledon::signal_name(*n) == name)?;
        Some(format!("{head} killed by signal -{number}"))
    }
}

/// `cotyledon._logrecords.emit`, looked up once.
static EMIT: OnceLock<Py<PyAny>> = OnceLock::new();

/// `cotyledon._logrecords.emit`: looked up at the first call, which
/// `Engine.run()` makes in the master. A worker's first record then runs
/// no import (importlib's Python code, whose first run in each worker
/// copied pages of the interpreter's frozen code objects).
fn emit_fn(py: Python<'_>) -> Option<Py<PyAny>> {
    if let Some(f) = EMIT.get() {
        return Some(f.clone_ref(py));
    }
    let f = py
        .import("cotyledon._logrecords")
        .and_then(|m| m.getattr("emit"))
        .ok()?;
    Some(EMIT.get_or_init(|| f.unbind()).clone_ref(py))
}

impl Bridge {
    /// Hands a line of a `cotyledon.*` logger to `cotyledon._logrecords`,
    /// which logs the contract's lines with Cotyledon's template, args and
    /// call site; false for any other text (then logged as it is).
    fn emit_as_reference(&self, record: &log::Record<'_>) -> bool {
        if !log::Log::enabled(&self.inner, record.metadata()) {
            return true;
        }
        let level = match record.level() {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug | log::Level::Trace => 10,
        };
        Python::attach(|py| {
            let Some(emit) = emit_fn(py) else {
                return false;
            };
            let text = record.args().to_string();
            match emit.bind(py).call1((record.target(), level, text)) {
                Ok(done) => done.is_truthy().unwrap_or(false),
                Err(e) => {
                    report(py, e);
                    false
                }
            }
        })
    }
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("cotyledon.") && self.emit_as_reference(record) {
            return;
        }
        match Self::reference_wording(record) {
            Some(text) => self.inner.log(
                &log::Record::builder()
                    .args(format_args!("{text}"))
                    .level(record.level())
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
            None => self.inner.log(record),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let logger =
        pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?.filter(log::LevelFilter::Debug);
    let handle = logger.reset_handle();
    if log::set_boxed_logger(Box::new(Bridge { inner: logger })).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
        let _ = LOG_RESET.set(handle);
    }
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(py_reset_log_cache, m)?)?;
    m.add_function(wrap_pyfunction!(ctl_main, m)?)?;
    m.add_function(wrap_pyfunction!(announce_restart, m)?)?;
    m.add_function(wrap_pyfunction!(forked_by_application, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SYSTEMD_VARS", cotyledon::SYSTEMD_VARS.to_vec())?;
    Ok(())
}
