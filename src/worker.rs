//! The worker process: builds its service, runs it in a thread, and turns
//! signals and the master's death into terminate / reload / exit.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::{getpid, getppid, Pid};

use crate::hooks::{run_each, NewWorkerHook};
use crate::logging::{panic_message, WORKER};
use crate::signals::{Sig, SignalFlags};
use crate::title::{self, TitleMode};
use crate::{
    sys, AppError, Service, ServiceExit, ServiceId, ServiceResult, WorkerId, WorkerIdentity,
};

/// Builds a worker's service, in the worker, from its identity.
pub(crate) type Factory =
    Box<dyn FnMut(&WorkerIdentity) -> Result<Box<dyn Service>, AppError> + Send>;

/// Who this process is, set in each worker right after the fork (the
/// master never sets it). Lock-free, so a fork never inherits a held lock;
/// a worker that runs a manager of its own gives its workers their own.
static IDENTITY: sys::LeakedSlot<WorkerIdentity> = sys::LeakedSlot::new();

/// Which service and worker this process is: `Some` in a worker process
/// (from its factory on, in every thread), `None` in the master and in
/// any process that is not a worker of this engine.
///
/// ```
/// // A doctest is no worker:
/// assert!(cotyledon::current_worker().is_none());
/// ```
///
/// In a worker, for example in a log formatter or deep in library code
/// that has no access to the service:
///
/// ```
/// fn log_prefix() -> String {
///     match cotyledon::current_worker() {
///         Some(me) => format!("{}({})", me.service_name, me.worker_id),
///         None => "master".to_string(),
///     }
/// }
/// assert_eq!(log_prefix(), "master");
/// ```
pub fn current_worker() -> Option<&'static WorkerIdentity> {
    IDENTITY.get()
}
/// The wake-up callback (see `bindings::set_on_wakeup`).
pub(crate) type WakeFn = Box<dyn FnMut() -> Option<i32> + Send>;
/// Called before the process ends with the given status.
pub(crate) type ExitFn = Arc<dyn Fn(i32) + Send + Sync>;

static EXIT_HOOK: Mutex<Option<ExitFn>> = Mutex::new(None);

/// The master died: nobody is left to end what this worker started, so it
/// does, when it exits.
static ORPHANED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exit_hook(hook: Option<ExitFn>) {
    *EXIT_HOOK.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

/// Ends this process with `code`: runs the exit callback (flushing
/// buffered output), then `_exit`, without atexit handlers or unwinding.
pub(crate) fn exit(code: i32) -> ! {
    let hook = EXIT_HOOK.lock().ok().and_then(|h| h.clone());
    if let Some(hook) = hook {
        let _ = catch_unwind(AssertUnwindSafe(|| hook(code)));
    }
    // Only a worker with children pays the pass over /proc (64 workers
    // of a killed master each reading every process was 5x slower).
    if ORPHANED.load(Ordering::Acquire) && sys::has_children() {
        // Nothing outlives the master: what this worker started goes
        // with it (a process that ignores SIGTERM too).
        for pid in sys::descendants(&[getpid().as_raw()]) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    sys::exit_now(code)
}

/// The write end of the master's announcement pipe, in a worker.
static ANNOUNCE_FD: AtomicI32 = AtomicI32::new(-1);

/// Restarts the current worker: it tells the master that its coming exit
/// is a restart ([`announce_restart`]), then sends itself SIGTERM, so it
/// terminates gracefully (its `terminate()` runs) and the manager starts a
/// new one with the same worker id. This is what [`Service::reload`] does
/// by default.
pub fn restart_worker() {
    announce_restart();
    let _ = nix::sys::signal::kill(getpid(), nix::sys::signal::Signal::SIGTERM);
}

/// Tells the master that this worker's coming exit, whatever its status,
/// is a restart: it is respawned at once whatever its service's
/// [`ServicePolicy`](crate::ServicePolicy) says, and counts neither for
/// the policy, nor the backoff, nor the give-up. Call it just before the
/// worker ends itself to restart (as [`restart_worker`] does); the master
/// reads it before it handles the worker's exit. Outside a worker (in the
/// master, or before `run()`), it does nothing.
pub fn announce_restart() {
    let fd = ANNOUNCE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        let _ = sys::write_bytes(fd, &getpid().as_raw().to_ne_bytes());
    }
}

pub(crate) struct WorkerContext<'a> {
    pub service_id: ServiceId,
    pub worker_id: WorkerId,
    pub name: &'a str,
    pub factory: &'a mut Factory,
    pub new_worker_hooks: &'a mut Vec<NewWorkerHook>,
    pub default_timeout: Duration,
    pub master: Pid,
    pub death_r: BorrowedFd<'a>,
    pub death_w: RawFd,
    /// The announcement pipe (see [`announce_restart`]): this worker keeps
    /// the write end and closes the read end.
    pub announce: (RawFd, RawFd),
    pub wake_r: BorrowedFd<'a>,
    pub signals: &'a SignalFlags,
    pub on_wakeup: Option<&'a mut WakeFn>,
    pub titles: TitleMode,
}

/// What a worker's threads share.
struct Running {
    service: Box<dyn Service>,
    title: String,
    /// The service's name and the worker's id, for error records.
    name: String,
    worker: WorkerId,
    /// What the callbacks thread is doing: [`IDLE`], [`RELOADING`],
    /// [`RELOAD_AGAIN`] or [`TERMINATING`].
    callbacks: AtomicU8,
}

/// No callback queued or running.
const IDLE: u8 = 0;
/// A reload is queued or runs.
const RELOADING: u8 = 1;
/// A reload is queued or runs, and a SIGHUP came since it was queued: one
/// more reload follows it, so the last SIGHUP is always acted on (the
/// reference drops it, and a configuration changed meanwhile would go
/// unread). Any number of SIGHUPs meanwhile make one more reload.
const RELOAD_AGAIN: u8 = 2;
/// Terminate is queued or runs: SIGHUPs are ignored from then on.
const TERMINATING: u8 = 3;

impl Running {
    fn who(&self, method: &'static str) -> Who<'_> {
        Who {
            name: &self.name,
            worker: self.worker,
            method,
        }
    }

    /// Moves the callbacks state with `step`; returns the state before.
    fn step_callbacks(&self, step: fn(u8) -> u8) -> u8 {
        match self
            .callbacks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some(step(s)))
        {
            Ok(before) | Err(before) => before,
        }
    }

    /// A SIGHUP reached the loop: whether a reload must be queued (none is
    /// queued or running, and no terminate).
    fn sighup(&self) -> bool {
        let before = self.step_callbacks(|s| match s {
            IDLE => RELOADING,
            RELOADING | RELOAD_AGAIN => RELOAD_AGAIN,
            other => other,
        });
        before == IDLE
    }

    /// A reload returned: whether to run it once more (a SIGHUP came
    /// meanwhile, and no terminate).
    fn reload_done(&self) -> bool {
        let before = self.step_callbacks(|s| match s {
            RELOAD_AGAIN => RELOADING,
            RELOADING => IDLE,
            other => other,
        });
        before == RELOAD_AGAIN
    }
}

/// What the callbacks thread runs, one at a time, in order.
enum Call {
    Terminate,
    Reload,
}

/// Logs how a service method ended and leaves the process if it must.
/// `Ok(())` means "keep going". `who` names the service, the worker id
/// and the method (`Service echo worker 0: run()`): a failure is one
/// record, on one line, `<who> failed: <error>`.
fn settle(who: Who<'_>, what: Result<ServiceResult, Box<dyn std::any::Any + Send>>) {
    let error = match what {
        Ok(Ok(())) => return,
        Ok(Err(e)) => {
            if let Some(ServiceExit::Code(c)) = e.downcast_ref::<ServiceExit>() {
                exit(*c)
            }
            // A ServiceExit::Failed displays its message.
            e.to_string()
        }
        Err(p) => panic_message(&*p),
    };
    log::error!(target: WORKER, "{who} failed: {}", crate::logging::one_line(&error));
    exit(2)
}

/// Who a record about a service method speaks of; formatted only when a
/// failure is logged, not on each worker's start.
#[derive(Clone, Copy)]
struct Who<'a> {
    name: &'a str,
    worker: WorkerId,
    method: &'static str,
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Service {} worker {}: {}",
            self.name, self.worker, self.method
        )
    }
}

fn spawn(what: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(what.to_string()).spawn(f) {
        log::error!(target: WORKER, "Cannot start the {what} thread: {e}");
        exit(2);
    }
}

/// The worker's whole life; never returns.
pub(crate) fn run(ctx: WorkerContext<'_>) -> ! {
    // This process must not keep the master alive for its siblings.
    // SAFETY-free: closing our copy of the write end is plain close().
    let _ = nix::unistd::close(ctx.death_w);
    let _ = nix::unistd::close(ctx.announce.0);
    ANNOUNCE_FD.store(ctx.announce.1, Ordering::Release);
    // Backstop for the death pipe: SIGTERM when the master dies. Checked
    // against getppid() below, so the parent-death line is never skipped.
    sys::set_parent_death_signal(libc::SIGTERM);

    let me = IDENTITY.set(WorkerIdentity::new(ctx.service_id, ctx.name, ctx.worker_id));
    let built = catch_unwind(AssertUnwindSafe(|| (ctx.factory)(me)));
    let factory = Who {
        name: ctx.name,
        worker: ctx.worker_id,
        method: "factory",
    };
    let service = match built {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => settle_and_exit(factory, Ok(Err(e))),
        Err(p) => settle_and_exit(factory, Err(p)),
    };
    let pid = getpid();
    let shared = Arc::new(Running {
        service,
        title: format!("{}({}) [{}]", ctx.name, ctx.worker_id, pid),
        name: ctx.name.to_string(),
        worker: ctx.worker_id,
        callbacks: AtomicU8::new(IDLE),
    });
    title::set(ctx.titles, &title::worker_title(ctx.name, ctx.worker_id));
    let about = format_args!(" (service {}, worker {})", ctx.name, ctx.worker_id);
    run_each("new_worker", about, ctx.new_worker_hooks, |h| {
        h(ctx.service_id, ctx.worker_id, &*shared.service)
    });

    log::debug!(target: WORKER, "Run service {}", shared.title);
    let s = Arc::clone(&shared);
    spawn("run", move || {
        settle(
            s.who("run()"),
            catch_unwind(AssertUnwindSafe(|| s.service.run())),
        )
    });

    // terminate() and reload() run on one long-lived thread, fed by the
    // loop: a thread per call cost a thread start on every SIGHUP. It is
    // started at the first call: most workers never get one before they
    // are killed, and a thread start is a good part of a worker's start-up.
    let mut callbacks: Option<std::sync::mpsc::Sender<Call>> = None;
    let mut queue_call = |call: Call| {
        let sender = callbacks.get_or_insert_with(|| start_callbacks(Arc::clone(&shared)));
        let _ = sender.send(call);
    };

    let mut on_wakeup = ctx.on_wakeup;
    let mut parent_gone = false;
    let mut watching_parent = true;
    let mut deadline: Option<(Instant, Duration)> = None;
    let mut terminating = false;
    loop {
        let mut fds = vec![PollFd::new(ctx.wake_r, PollFlags::POLLIN)];
        if watching_parent {
            fds.push(PollFd::new(ctx.death_r, PollFlags::POLLIN));
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some((t, _)) => {
                let ms = t
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let _ = nix::poll::poll(&mut fds, timeout);
        let death_seen = watching_parent
            && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| {
                r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN | PollFlags::POLLERR)
            });
        drop(fds);
        // The wake-up callback (the Python face runs the application's own
        // signal handlers in it) only when something other than the
        // engine's signals wrote to the pipe: a SIGHUP fanned out to every
        // worker then costs no interpreter round trip on the main thread.
        let foreign = sys::drain(ctx.wake_r.as_raw_fd(), |b| ctx.signals.echoes(b));
        if let Some(hook) = on_wakeup.as_mut().filter(|_| foreign) {
            if let Some(code) = hook() {
                exit(code);
            }
        }
        if ctx.signals.take(Sig::Int) {
            log::info!(
                target: WORKER,
                "Caught SIGINT signal, instantaneous exiting of service {}",
                shared.title
            );
            exit(1);
        }
        let mut term = ctx.signals.take(Sig::Term);
        if term && parent_gone {
            // The kernel's parent-death SIGTERM after the pipe already told
            // us (or a later one): the graceful exit is under way.
            term = false;
        }
        if death_seen {
            watching_parent = false;
        }
        if !parent_gone && (death_seen || (term && getppid() != ctx.master)) {
            parent_gone = true;
            ORPHANED.store(true, Ordering::Release);
            log::info!(
                target: WORKER,
                "Parent process has died unexpectedly, {} exiting",
                shared.title
            );
            term = true;
        }
        if term {
            log::info!(
                target: WORKER,
                "Caught SIGTERM signal, graceful exiting of service {}",
                shared.title
            );
            if !terminating {
                terminating = true;
                let timeout = shared
                    .service
                    .graceful_shutdown_timeout()
                    .unwrap_or(ctx.default_timeout);
                if !timeout.is_zero() {
                    deadline = Some((Instant::now() + timeout, timeout));
                }
                shared.callbacks.store(TERMINATING, Ordering::Release);
                queue_call(Call::Terminate);
            }
        }
        if ctx.signals.take(Sig::Hup) && shared.sighup() {
            queue_call(Call::Reload);
        }
        ctx.signals.take(Sig::Chld);
        if let Some((t, timeout)) = deadline {
            if Instant::now() >= t {
                log::info!(
                    target: WORKER,
                    "Graceful shutdown timeout ({}) exceeded, exiting {} now.",
                    timeout.as_secs(),
                    shared.title
                );
                exit(1);
            }
        }
    }
}

/// Starts the thread that runs terminate() and reload(), one at a time, in
/// the order the loop queued them.
fn start_callbacks(shared: Arc<Running>) -> std::sync::mpsc::Sender<Call> {
    let (calls, queue) = std::sync::mpsc::channel::<Call>();
    spawn("callbacks", move || {
        for call in queue {
            match call {
                Call::Terminate => {
                    settle(
                        shared.who("terminate()"),
                        catch_unwind(AssertUnwindSafe(|| shared.service.terminate())),
                    );
                    exit(0);
                }
                Call::Reload => loop {
                    settle(
                        shared.who("reload()"),
                        catch_unwind(AssertUnwindSafe(|| shared.service.reload())),
                    );
                    // A terminate, if any, waits in the queue.
                    if !shared.reload_done() {
                        break;
                    }
                },
            }
        }
    });
    calls
}

fn settle_and_exit(who: Who<'_>, what: Result<ServiceResult, Box<dyn std::any::Any + Send>>) -> ! {
    settle(who, what);
    // The factory said "stop" without a code: treat as a failure.
    exit(2)
}
