//! Signal handlers and the parent-death signal.

use std::io;
use std::os::fd::RawFd;

use super::fds::poke;

/// Installs a handler for `sig` that sets `flag`, then writes a byte to
/// `wake_fd` (by number, so a pipe renewed in place keeps working).
pub(crate) fn on_signal(
    sig: i32,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    wake_fd: RawFd,
) -> io::Result<signal_hook::SigId> {
    let action = move || {
        flag.store(true, std::sync::atomic::Ordering::Release);
        // Preserve errno: the handler may interrupt code that reads it.
        let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        poke(wake_fd);
        // SAFETY: __errno_location returns a valid, aligned pointer to the
        // calling thread's own errno, which nothing else writes while this
        // handler runs on that thread; storing an int there is what the C
        // runtime itself does.
        unsafe { *libc::__errno_location() = saved };
    };
    // SAFETY: signal_hook::low_level::register requires the action to be
    // async-signal-safe. It does an atomic store into an Arc it owns (no
    // lock, no allocation, the Arc lives as long as the registration),
    // write(2) through `poke`, and an errno save/restore; it never
    // allocates, locks or panics.
    unsafe { signal_hook::low_level::register(sig, action) }
}

/// The handler address the kernel holds for `sig` right now (`SIG_DFL`,
/// `SIG_IGN` or a function), to tell later whether someone replaced it.
pub(crate) fn installed_handler(sig: i32) -> usize {
    // SAFETY: `libc::sigaction` is plain old data, so all-zero is a valid
    // value; sigaction(2) with a null new action only queries and writes the
    // current one into `old`, a live local we exclusively borrow. A bad
    // `sig` only yields -1, handled below.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            return libc::SIG_DFL;
        }
        old.sa_sigaction
    }
}

/// Asks the kernel to send `sig` to this process when its parent dies.
pub(crate) fn set_parent_death_signal(sig: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only (no
    // pointers), and it only changes an attribute of the calling process;
    // an invalid signal number is only an error return.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
    }
}

/// Makes this process a child subreaper: orphans among its descendants
/// are reparented to it instead of to the namespace's init.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only
    // (no pointers) and only changes an attribute of the calling process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
