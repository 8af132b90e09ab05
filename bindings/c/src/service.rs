//! A service described by C callbacks, and the `Service` that calls them in
//! each worker.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use cotyledon::{AppError, Service, ServiceResult, WorkerIdentity};

/// Who a worker is: its service's id and name, and its worker id. `create`
/// gets it, and `cotyledon_current_worker` fills one in any worker thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cotyledon_worker_identity {
    /// The id `cotyledon_manager_add` wrote for the service.
    pub service_id: u64,
    /// The name the service was added with: NUL-terminated UTF-8, owned by
    /// the library and valid for the rest of the worker process's life.
    pub service_name: *const c_char,
    /// The worker's id within its service (0 .. workers-1; a respawned
    /// worker gets the id of the one it replaces).
    pub worker_id: u64,
}

/// This worker's name for C, and its identity, set by [`create`] in each
/// new worker (never in the master). Lock-free, as the core's: a leaked
/// box per worker process.
struct CIdentity {
    name: CString,
    service_id: u64,
    worker_id: u64,
}

static IDENTITY: AtomicPtr<CIdentity> = AtomicPtr::new(std::ptr::null_mut());

fn set_identity(me: &WorkerIdentity) -> cotyledon_worker_identity {
    // A name with a NUL cannot be added through the C API; a Rust caller
    // could, and the C face sees it cut there.
    let name = me.service_name.split('\0').next().unwrap_or_default();
    let leaked = Box::leak(Box::new(CIdentity {
        name: CString::new(name).unwrap_or_default(),
        service_id: me.service_id.as_u64(),
        worker_id: me.worker_id as u64,
    }));
    IDENTITY.store(leaked, Ordering::Release);
    to_c(leaked)
}

fn to_c(me: &'static CIdentity) -> cotyledon_worker_identity {
    cotyledon_worker_identity {
        service_id: me.service_id,
        service_name: me.name.as_ptr(),
        worker_id: me.worker_id,
    }
}

/// This process's identity, when it is a worker.
pub(crate) fn current_identity() -> Option<cotyledon_worker_identity> {
    // SAFETY: null or a box leaked by `set_identity`, never freed.
    let me = unsafe { IDENTITY.load(Ordering::Acquire).as_ref() }?;
    Some(to_c(me))
}

/// A C pointer moved between threads. The C side documents which threads
/// may use what it points to.
#[derive(Clone, Copy)]
pub(crate) struct Ptr(pub *mut c_void);
// SAFETY: the header documents that userdata and instances are used from
// several threads; making that safe is the program's side of the contract.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    /// The pointer (a method, so closures capture the whole `Ptr`).
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

/// The callbacks of a service. Every member may be NULL.
///
/// Each callback gets the `userdata` given to `cotyledon_manager_add` first
/// and, except `create`, the instance `create` made. All of them run in the
/// worker processes, never in the master.
///
/// Threads: `run` runs in its own thread; `terminate` and `reload` each run
/// in a new thread, possibly while `run` is still running (so share state
/// through atomics or a mutex). `terminate` and `reload` never overlap each
/// other. `destroy` runs last, alone.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct cotyledon_service {
    /// Builds the instance of the worker `worker` describes (its service's
    /// id and name, and its worker id: 0 .. workers-1, a respawned worker
    /// gets the id of the one it replaces), in the new worker process, and
    /// stores it in `*instance` (initially NULL; it may stay NULL). `worker`
    /// and its name stay valid for the worker's life. Return 0, or a
    /// nonzero exit status to end the worker with it (the master then
    /// respawns it). NULL: the instance is NULL.
    ///
    /// Build here what does not survive a fork: threads, event loops.
    pub create: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            worker: *const cotyledon_worker_identity,
            instance: *mut *mut c_void,
        ) -> c_int,
    >,
    /// The service's activity, in its own thread, once the worker is ready.
    /// Return 0 when done (the worker keeps waiting for signals), or a
    /// nonzero exit status to end the worker with it. A `run` that loops
    /// should stop when `terminate` asks it to. NULL: nothing to run.
    pub run: Option<unsafe extern "C" fn(userdata: *mut c_void, instance: *mut c_void) -> c_int>,
    /// Graceful stop, on SIGTERM (also when the master died): returns the
    /// worker's exit status (0 for a clean stop). The worker then waits for
    /// `run` to return, calls `destroy` and exits with that status. If all
    /// of this takes longer than the graceful shutdown timeout, the worker
    /// exits with status 1 without `destroy`. NULL: status 0.
    pub terminate:
        Option<unsafe extern "C" fn(userdata: *mut c_void, instance: *mut c_void) -> c_int>,
    /// Reload, on SIGHUP: return 0 to keep going, or a nonzero exit status
    /// to end the worker with it. A SIGHUP that arrives while `terminate`
    /// runs is ignored; SIGHUPs that arrive while `reload` runs make it run
    /// once more when it returns, so the last one is always acted on. NULL:
    /// restart the worker (it
    /// terminates gracefully, `terminate` included, and the master starts a
    /// fresh one with the same worker id).
    pub reload: Option<unsafe extern "C" fn(userdata: *mut c_void, instance: *mut c_void) -> c_int>,
    /// Frees the instance. Called at most once, in the worker, after
    /// `terminate` and `run` returned. Not called when the worker ends in
    /// another way (SIGINT, graceful timeout, a nonzero status from `run` or
    /// `reload` while another callback is still running): the process ends
    /// and the system reclaims its memory. NULL: nothing to free.
    pub destroy: Option<unsafe extern "C" fn(userdata: *mut c_void, instance: *mut c_void)>,
}

/// The instance of this worker process, for the new-worker hooks (the
/// core hands them a `&dyn Service`, which says nothing of C).
static WORKER_INSTANCE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn worker_instance() -> *mut c_void {
    WORKER_INSTANCE.load(Ordering::Acquire)
}

struct Life {
    /// `run` has not returned yet (it is started right after creation).
    run_pending: bool,
    /// `terminate` or `reload` is running.
    busy: u32,
    destroyed: bool,
}

pub(crate) struct CService {
    cb: cotyledon_service,
    userdata: Ptr,
    instance: Ptr,
    life: Mutex<Life>,
    run_done: Condvar,
}

/// Builds the service of a new worker (the factory given to the core).
pub(crate) fn create(
    cb: cotyledon_service,
    userdata: Ptr,
    me: &WorkerIdentity,
) -> Result<CService, AppError> {
    let mut instance: *mut c_void = std::ptr::null_mut();
    let who = set_identity(me);
    if let Some(create) = cb.create {
        // SAFETY: a callback the program registered, with its userdata, an
        // identity that outlives the call and a valid out-pointer.
        let rc = unsafe { create(userdata.0, &who, &mut instance) };
        if rc != 0 {
            return Err(AppError::exit(rc));
        }
    }
    WORKER_INSTANCE.store(instance, Ordering::Release);
    Ok(CService {
        cb,
        userdata,
        instance: Ptr(instance),
        life: Mutex::new(Life {
            run_pending: true,
            busy: 0,
            destroyed: false,
        }),
        run_done: Condvar::new(),
    })
}

fn status(code: c_int) -> ServiceResult {
    if code == 0 {
        Ok(())
    } else {
        Err(AppError::exit(code))
    }
}

impl CService {
    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `destroy` if nothing else uses the instance any more.
    fn destroy_if_idle(&self, mut life: MutexGuard<'_, Life>) {
        if life.run_pending || life.busy > 0 || life.destroyed {
            return;
        }
        life.destroyed = true;
        if let Some(destroy) = self.cb.destroy {
            // SAFETY: the instance `create` made, no other callback running.
            unsafe { destroy(self.userdata.0, self.instance.0) };
        }
    }

    fn call(&self, f: Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int>) -> c_int {
        match f {
            // SAFETY: a callback the program registered, with its userdata
            // and instance.
            Some(f) => unsafe { f(self.userdata.0, self.instance.0) },
            None => 0,
        }
    }
}

impl Service for CService {
    fn run(&self) -> ServiceResult {
        let code = self.call(self.cb.run);
        let mut life = self.life();
        life.run_pending = false;
        self.run_done.notify_all();
        if code != 0 {
            self.destroy_if_idle(life);
        }
        status(code)
    }

    fn terminate(&self) -> ServiceResult {
        self.life().busy += 1;
        let code = self.call(self.cb.terminate);
        let mut life = self.life();
        life.busy -= 1;
        while life.run_pending {
            life = self.run_done.wait(life).unwrap_or_else(|e| e.into_inner());
        }
        self.destroy_if_idle(life);
        status(code)
    }

    fn reload(&self) -> ServiceResult {
        if self.cb.reload.is_none() {
            cotyledon::restart_worker();
            return Ok(());
        }
        self.life().busy += 1;
        let code = self.call(self.cb.reload);
        let mut life = self.life();
        life.busy -= 1;
        if code != 0 {
            self.destroy_if_idle(life);
        }
        status(code)
    }
}
