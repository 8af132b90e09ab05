//! Every `unsafe` call of the crate lives here, each behind a small safe
//! function whose comment says why it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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
    // SAFETY: see above; nix::unistd::fork is unsafe only because of the
    // multi-threaded-parent caveat documented on ServiceManager::set_fork.
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

/// Ends the process at once, without running atexit handlers or unwinding.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Creates a pipe whose ends are close-on-exec and non-blocking.
pub(crate) fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    Ok((r, w))
}

/// Creates a close-on-exec pipe with a blocking read end (the parent-death pipe).
pub(crate) fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((r, w))
}

/// Replaces the pipe open at `(r, w)` with a fresh one on the same fd
/// numbers, so that whatever still refers to those numbers (signal handlers,
/// Python's wakeup fd) now talks to a pipe that this process alone owns.
pub(crate) fn renew_pipe_in_place(r: RawFd, w: RawFd) -> io::Result<()> {
    let (nr, nw) = nonblocking_pipe()?;
    for (new, old) in [(nr.as_raw_fd(), r), (nw.as_raw_fd(), w)] {
        // SAFETY: dup3 atomically closes `old` and makes it a copy of `new`;
        // both are fds of this process, and `old` stays owned by its owner.
        if unsafe { libc::dup3(new, old, libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The byte the engine writes to its self-pipe. Anything else there was
/// written by someone else: CPython's C signal handler writes the signal
/// number (never 0) to the fd given to `signal.set_wakeup_fd`.
const ENGINE_BYTE: u8 = 0;

/// Writes the engine's byte to a non-blocking fd, ignoring a full pipe.
pub(crate) fn poke(fd: RawFd) {
    let b = [ENGINE_BYTE];
    // SAFETY: writes one byte from a valid buffer; a failure (EAGAIN when the
    // pipe is full) is fine since a full pipe already wakes the reader.
    unsafe {
        libc::write(fd, b.as_ptr().cast(), 1);
    }
}

/// Reads everything currently in a non-blocking pipe. Returns whether it
/// held a byte that is neither the engine's own nor claimed by `echo` (see
/// `SignalFlags::echoes`), or so much that a byte of someone else's may
/// have been refused for want of room.
pub(crate) fn drain(fd: RawFd, echo: impl Fn(u8) -> bool) -> bool {
    let mut buf = [0u8; 512];
    // Each distinct byte value is judged once per drain.
    let mut judged = [false; 256];
    let mut foreign = false;
    let mut total = 0usize;
    loop {
        // SAFETY: reads into a valid buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let n = n as usize;
            total += n;
            for &b in &buf[..n] {
                if b != ENGINE_BYTE && !foreign && !judged[b as usize] {
                    judged[b as usize] = true;
                    foreign = !echo(b);
                }
            }
        }
        if n < buf.len() as isize {
            break;
        }
    }
    foreign || total >= 4096
}

/// The handler address the kernel holds for `sig` right now (`SIG_DFL`,
/// `SIG_IGN` or a function), to tell later whether someone replaced it.
pub(crate) fn installed_handler(sig: i32) -> usize {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new
    // action only queries.
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
    // SAFETY: prctl with PR_SET_PDEATHSIG takes an integer argument only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
    }
}

/// Sets the thread name of the calling thread (shown as the process name
/// by `ps` and `top` when called from the main thread).
pub(crate) fn set_comm_name(name: &str) {
    // The kernel keeps 15 bytes; cut on a char boundary.
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(c) = CString::new(&name[..end]) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
    }
}

/// Overwrites the process's argv area (what `ps -f` shows) with `title`.
///
/// The area is the one the kernel reports in `/proc/self/stat`; the title is
/// cut to fit it and the rest is zeroed. Only called when the caller opted
/// in, since it changes what `std::env::args()` returns afterwards.
pub(crate) fn set_argv_title(title: &str) -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the ")" of the comm name; arg_start and arg_end are
    // fields 48 and 49 of the whole line (1-based).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let get = |n: usize| -> io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))
    };
    let (start, end) = (get(48)?, get(49)?);
    if end <= start + 1 {
        return Err(io::Error::other("empty argv area"));
    }
    let len = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [start, end) is this process's own argv area, mapped writable
    // on the initial stack for the whole life of the process, as reported
    // by the kernel; we write within it only.
    unsafe {
        let dst = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
        std::ptr::write_bytes(dst.add(n), 0, len - n);
    }
    Ok(())
}

/// Removes a variable from the process environment.
///
/// Called from the master before it forks any worker, so that workers
/// cannot notify systemd again.
pub(crate) fn unsetenv(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: the engine calls this from its own loop; a concurrent
        // getenv from another thread is the caller's documented hazard, the
        // same as with Python's os.environ.
        unsafe {
            libc::unsetenv(c.as_ptr());
        }
    }
}

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
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = saved };
    };
    // SAFETY: the action only does async-signal-safe things: an atomic
    // store, write(2), and errno save/restore; it allocates nothing.
    unsafe { signal_hook::low_level::register(sig, action) }
}

/// How many threads this process has, from `/proc/self/stat`; `None`
/// when the kernel does not say.
pub(crate) fn thread_count() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The name (field 2) may hold spaces and parentheses: count fields
    // after its closing one. num_threads is field 20, the 18th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(17)?.parse().ok()
}

/// The pids of the children the calling thread forked and nobody reaped
/// yet (zombies included), sorted; `None` when the kernel does not say.
pub(crate) fn children_of_this_thread() -> Option<Vec<i32>> {
    let text = std::fs::read_to_string("/proc/thread-self/children").ok()?;
    let mut pids: Vec<i32> = text
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    Some(pids)
}
