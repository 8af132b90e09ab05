//! PID 1 and containers: the minimal init a manager splits off when it is
//! created as PID 1.
//!
//! See [`InitMode`] for what it does and why.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::master::{ForkCall, ForkOutcome};
use crate::{sys, title, Error, TitleMode};

/// Whether the manager splits off a minimal init at creation.
///
/// A container started without `--init` (or a Kubernetes pod without a
/// shared process namespace) runs the program as PID 1, and the kernel
/// hands PID 1 every orphan of the namespace: a grandchild a worker
/// double-forked, a subprocess whose parent died. The master reaps only
/// its own workers (`waitpid(pid)`, never `waitpid(-1)`, which would steal
/// the statuses of the application's own subprocesses), so without help
/// those orphans stay zombies forever.
///
/// # Design: split, like `tini`
///
/// When it splits, [`ServiceManager::with_settings`](crate::ServiceManager::with_settings)
/// forks before it does anything else. The **parent stays PID 1 and
/// becomes the init**; the **child returns from the constructor as the
/// real master** (a session leader of its own, as without the split). The
/// init:
///
/// - reaps every child it gets (`waitpid(-1)` on each `SIGCHLD`): all the
///   namespace's orphans, and in the end the master;
/// - forwards `SIGTERM`, `SIGINT`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`,
///   `SIGUSR2` and `SIGWINCH` to the master (to the master only: the master
///   fans them out to its workers as the contract says);
/// - exits with the master's status when the master ends: its exit code,
///   or 128 + the signal number when a signal killed it (as `tini` and
///   shells report it). As PID 1 its exit makes the kernel kill what is
///   left in the namespace.
///
/// It never returns to the caller and never runs application code again:
/// it holds none of the application's files (it closes every fd from 3
/// up), logs nothing (a log record would run the face's logger, Python
/// code in the Python face), and ends with `_exit`. Create the manager
/// before starting threads: as with any fork, a thread started before it
/// is not in the master; it stays in the init, where a Python thread is
/// parked for good (the init keeps the interpreter's lock) but a Rust or
/// C thread would keep running.
///
/// Why a split rather than making the master itself reap everything: the
/// master's own children, including subprocesses the application starts
/// in the master (`subprocess.run`, `Command::output`, an application
/// thread's `waitpid(pid)`), must never have their status stolen by a
/// `waitpid(-1)`. Only a process that runs no application code can reap
/// blindly. And the split happens at creation, not in `run()`: whatever
/// the application builds after creating the manager (a
/// `multiprocessing.Manager()` server, threads, sockets) is the real
/// master's, and a master forked later could not reach it.
///
/// # Choosing
///
/// [`Settings::init`](crate::Settings::init) ([`InitMode`]): `Auto` (the
/// default) splits only when the process is PID 1; `Always` splits in any
/// case (the init then makes itself a child subreaper, so the orphans of
/// the master's tree still come to it: for tests without namespaces, or
/// under a supervisor that does not reap); `Never` never splits. When the
/// setting is `Auto`, the environment variable `COTYLEDON_INIT`
/// ([`INIT_ENV`]: `auto`, `always` or `never`, any case; empty is unset)
/// decides instead, so an operator can turn it on or off for an unmodified
/// application; an explicit `Always` or `Never` in the program wins over
/// the environment. Another value is an error at creation
/// ([`Error::InvalidSetting`]).
///
/// The master asks for `SIGTERM` when the init dies
/// (`PR_SET_PDEATHSIG`), so killing the init of a non-PID-1 split stops
/// the master gracefully instead of orphaning it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitMode {
    /// Split only when the process is PID 1 (a container without an init);
    /// `COTYLEDON_INIT` may say otherwise. The default.
    #[default]
    Auto,
    /// Always split; when not PID 1 the init is a child subreaper.
    Always,
    /// Never split (the process's own init or supervisor reaps orphans).
    Never,
}

/// The environment variable read when [`Settings::init`](crate::Settings::init)
/// is [`InitMode::Auto`]: `auto`, `always` or `never`.
pub const INIT_ENV: &str = "COTYLEDON_INIT";

impl std::str::FromStr for InitMode {
    type Err = Error;

    /// `auto`, `always` or `never`, in any case.
    fn from_str(text: &str) -> Result<Self, Error> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(InitMode::Auto),
            "always" => Ok(InitMode::Always),
            "never" => Ok(InitMode::Never),
            _ => Err(Error::InvalidSetting(format!(
                "{INIT_ENV} must be auto, always or never, not: {text:?}"
            ))),
        }
    }
}

impl InitMode {
    /// The mode in effect: the setting, or when it is `Auto` the
    /// environment's (unset or empty: `Auto`).
    pub(crate) fn effective(self) -> Result<InitMode, Error> {
        if self != InitMode::Auto {
            return Ok(self);
        }
        match std::env::var_os(INIT_ENV) {
            None => Ok(InitMode::Auto),
            Some(v) if v.is_empty() => Ok(InitMode::Auto),
            Some(v) => v.to_str().map_or_else(
                || {
                    Err(Error::InvalidSetting(format!(
                        "{INIT_ENV} must be auto, always or never, not: {v:?}"
                    )))
                },
                str::parse,
            ),
        }
    }
}

/// The signals the init passes on to the master.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The pid of the init this process split off (0: none).
static INIT_PID: AtomicI32 = AtomicI32::new(0);

/// The pid of the init this master split off at creation, if it did.
pub(crate) fn init_pid() -> Option<i32> {
    Some(INIT_PID.load(Ordering::Relaxed)).filter(|&p| p != 0)
}

/// The init's exit status if its own loop failed (a bug): `EX_SOFTWARE`.
const INIT_FAILED: i32 = 70;

/// Splits off the init when `mode` says so, through the face's fork
/// `wrapper`. Returns `Ok(None)` without forking when it does not split,
/// `Ok(Some(init_pid))` in the new master; in the parent it never returns
/// (the parent becomes the init and ends with `_exit`).
pub(crate) fn split(
    mode: InitMode,
    titles: TitleMode,
    wrapper: &mut dyn FnMut(ForkCall<'_>) -> io::Result<ForkOutcome>,
) -> Result<Option<i32>, Error> {
    let pid1 = std::process::id() == 1;
    let wanted = match mode.effective()? {
        InitMode::Never => false,
        InitMode::Always => true,
        InitMode::Auto => pid1,
    };
    if !wanted {
        return Ok(None);
    }
    let init_pid = nix::unistd::getpid();
    // Made before the fork, so that failing is an error at creation; the
    // master closes its copy.
    let (wake_r, wake_w) = sys::nonblocking_pipe()?;
    // No signal is delivered to this thread until the init has its handlers
    // (a SIGTERM in between would be lost, or kill a process that is not
    // PID 1) and the master has its mask back.
    let mask = sys::block_all_signals();
    let mut once = Some(());
    let mut call = || -> io::Result<ForkOutcome> {
        if once.take().is_none() {
            return Err(io::Error::other("the fork wrapper forked twice"));
        }
        match sys::fork_raw()? {
            // The init: whatever happens in its loop, the process ends here
            // with `_exit`, never unwinding into the caller's frames (a C
            // or Python caller's).
            sys::Forked::Parent(master) => {
                let code = catch_unwind(AssertUnwindSafe(|| {
                    run_init(master, pid1, titles, &mask, &wake_r, &wake_w)
                }))
                .unwrap_or(INIT_FAILED);
                sys::exit_now(code)
            }
            sys::Forked::Child => Ok(ForkOutcome::Child),
        }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| wrapper(&mut call)))
        .unwrap_or_else(|_| Err(io::Error::other("the fork wrapper panicked")));
    sys::restore_signal_mask(&mask);
    drop((wake_r, wake_w));
    match outcome {
        Ok(ForkOutcome::Child) => {
            sys::set_parent_death_signal(libc::SIGTERM);
            if nix::unistd::getppid() != init_pid {
                // The init died before the death signal was asked for.
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
            }
            INIT_PID.store(init_pid.as_raw(), Ordering::Relaxed);
            Ok(Some(init_pid.as_raw()))
        }
        Ok(ForkOutcome::Parent(_)) => Err(Error::Io(io::Error::other(
            "the fork wrapper returned without calling the fork",
        ))),
        Err(e) => Err(Error::Io(e)),
    }
}

/// The init's life, in the process that stays behind; returns its exit
/// status once the master has ended.
fn run_init(
    master: Pid,
    pid1: bool,
    titles: TitleMode,
    mask: &SigSet,
    wake_r: &OwnedFd,
    wake_w: &OwnedFd,
) -> i32 {
    if !pid1 {
        // Orphans of the master's tree come here rather than to the real
        // init. Failing (a kernel before 3.4) only loses that.
        let _ = sys::set_child_subreaper();
    }
    title::set(titles, &title::init_title());
    sys::close_fds_except(&[wake_r.as_raw_fd(), wake_w.as_raw_fd()]);
    crate::signals::never_outside_run();
    let mut forwarded = Vec::with_capacity(FORWARDED.len());
    for sig in FORWARDED {
        let flag = Arc::new(AtomicBool::new(false));
        // A signal that cannot be caught is only not forwarded.
        if sys::on_signal(sig as i32, Arc::clone(&flag), wake_w.as_raw_fd()).is_ok() {
            forwarded.push((sig, flag));
        }
    }
    let child = Arc::new(AtomicBool::new(false));
    let _ = sys::on_signal(libc::SIGCHLD, child, wake_w.as_raw_fd());
    sys::restore_signal_mask(mask);
    loop {
        for (sig, flag) in &forwarded {
            if flag.swap(false, Ordering::AcqRel) {
                let _ = kill(master, *sig);
            }
        }
        if let Some(code) = reap(master) {
            return code;
        }
        let mut fds = [PollFd::new(wake_r.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
        sys::drain(wake_r.as_raw_fd(), |_| true);
    }
}

/// Reaps every child that has ended; returns the init's exit status once
/// the master is among them.
fn reap(master: Pid) -> Option<i32> {
    let mut status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == master => status = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == master => {
                status = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) => return status,
            Ok(_) | Err(Errno::EINTR) => {}
            // ECHILD: no child left to wait for.
            Err(_) => return status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_any_case_and_others_are_refused() {
        assert_eq!("auto".parse::<InitMode>().unwrap(), InitMode::Auto);
        assert_eq!("Always".parse::<InitMode>().unwrap(), InitMode::Always);
        assert_eq!("NEVER".parse::<InitMode>().unwrap(), InitMode::Never);
        let err = "sometimes".parse::<InitMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "COTYLEDON_INIT must be auto, always or never, not: \"sometimes\""
        );
        // An explicit setting does not read the environment.
        assert_eq!(InitMode::Never.effective().unwrap(), InitMode::Never);
        assert_eq!(InitMode::Always.effective().unwrap(), InitMode::Always);
    }
}
