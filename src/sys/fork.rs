//! `fork(2)`, the signal mask held around it, and `_exit(2)`.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::Pid;

/// Result of [`fork_raw`], as seen by the caller.
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// Plain `fork(2)`.
///
/// Sound because the engine forks only from its own single-threaded loop
/// (the caller guarantees no other thread of ours holds a lock the child
/// would need), and the child only runs the worker's own code before `_exit`.
pub(crate) fn fork_raw() -> io::Result<Forked> {
    // SAFETY: nix::unistd::fork is unsafe because, when other threads exist,
    // the child may only run async-signal-safe code until exec or exit (a
    // lock another thread held at fork time stays held forever). The engine
    // calls it from its own loop with every signal blocked, holding none of
    // its own locks, and the child only runs the worker's code and then
    // `_exit`s; other threads of the application are the caller's concern,
    // as with a bare fork() in C.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Blocks every signal in the calling thread, returning the previous mask.
pub(crate) fn block_all_signals() -> SigSet {
    let mut old = SigSet::empty();
    // Cannot fail with valid arguments.
    let _ = nix::sys::signal::pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Restores a mask saved by [`block_all_signals`].
pub(crate) fn restore_signal_mask(old: &SigSet) {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// Unblocks every signal in the calling thread: a worker started in a new
/// program inherits the mask the engine held around its fork, and clears
/// it once its handlers are in.
pub(crate) fn unblock_all_signals() {
    restore_signal_mask(&SigSet::empty());
}

/// Ends the process at once, without running atexit handlers or unwinding.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer only and is async-signal-safe, so it is
    // sound even in a child forked from a multi-threaded parent; skipping
    // atexit handlers and destructors is the intent (they belong to the
    // parent's state copied by fork).
    unsafe { libc::_exit(code) }
}
