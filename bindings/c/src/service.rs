//! A service described by C callbacks, and the `Service` that calls them in
//! each worker.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use cotyledon::{Service, ServiceExit, ServiceResult, WorkerId};

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
    /// Builds the instance of worker `worker_id` (0 .. workers-1; a
    /// respawned worker gets the id of the one it replaces), in the new
    /// worker process, and stores it in `*instance` (initially NULL; it may
    /// stay NULL). Return 0, or a nonzero exit status to end the worker with
    /// it (the master then respawns it). NULL: the instance is NULL.
    pub create: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            worker_id: u64,
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
    worker_id: WorkerId,
) -> Result<CService, ServiceExit> {
    let mut instance: *mut c_void = std::ptr::null_mut();
    if let Some(create) = cb.create {
        // SAFETY: a callback the program registered, with its userdata and
        // a valid out-pointer.
        let rc = unsafe { create(userdata.0, worker_id as u64, &mut instance) };
        if rc != 0 {
            return Err(ServiceExit::Code(rc));
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
        Err(ServiceExit::Code(code))
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
