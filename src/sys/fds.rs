//! Pipes and the self-pipe byte protocol.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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
        // SAFETY: dup3 takes plain integers; `new` is open (owned by `nr` /
        // `nw`, alive until the end of this function) and `old` is an fd of
        // this process that its owner keeps. dup3 atomically closes `old` and
        // makes it a copy of `new`, so the number never dangles and its
        // owner still closes it exactly once; the `OwnedFd`s then close only
        // the temporary numbers.
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
    // SAFETY: write(2) reads exactly 1 byte from `b`, a live local array of
    // length 1; it is async-signal-safe (poke runs in signal handlers). An
    // invalid fd or a full pipe (EAGAIN) is only an error return, and a full
    // pipe already wakes the reader, so the result is ignored.
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
        // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`, a live,
        // exclusively borrowed local array of exactly that length; any fd
        // value is sound (a bad one only yields -1).
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

/// Writes `bytes` to a non-blocking pipe in one `write(2)` (atomic up to
/// `PIPE_BUF`); whether all of them went.
pub(crate) fn write_bytes(fd: RawFd, bytes: &[u8]) -> bool {
    // SAFETY: write(2) reads at most `bytes.len()` bytes from a live slice
    // of that length; any fd value is sound (a bad one only yields -1).
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    n == bytes.len() as isize
}

/// Reads everything currently in a non-blocking pipe.
pub(crate) fn read_available(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`, a
        // live, exclusively borrowed local array of exactly that length;
        // any fd value is sound.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
        if (n as usize) < buf.len() {
            break;
        }
    }
    out
}

/// A pidfd for `pid` (close-on-exec): it polls readable once the process
/// has ended, reaped or not, whoever its parent is.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags (0) and returns a new
    // descriptor or -1; it reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just made for us; nobody
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Closes every fd of this process from 3 up, except those in `keep`:
/// the init split off at creation holds none of the application's files
/// (a pipe or socket it kept open would hide an EOF or a close from their
/// other end). Only for a process that never runs the application's code
/// again.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    // Listed first, closed after: the listing's own fd is gone by then.
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: close(2) takes an integer; a number that is no longer
            // open (the listing's own) is only an EBADF return. The caller
            // never runs the code that owned these fds again, so no owner
            // closes or uses a number after this.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// Sets or clears `FD_CLOEXEC` on `fd`: a worker started in a new program
/// keeps the fds the engine hands it across that one `exec`, and only
/// those.
pub(crate) fn set_cloexec(fd: RawFd, cloexec: bool) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFD/F_SETFD) takes an integer fd and integer flags
    // and touches no memory of ours; a bad fd only yields -1 (EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if cloexec {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, wanted) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of `fd`, an fd this process inherited across `exec`
/// and that nothing else of it owns (a worker started in a new program
/// receives its parent-death and announcement fds by number). Fails when
/// the number is not open; it is made close-on-exec again.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        return Err(io::Error::other(format!("fd {fd} is not an inherited fd")));
    }
    set_cloexec(fd, true)?;
    // SAFETY: the fd is open (F_GETFD succeeded in set_cloexec) and, by
    // this function's contract, owned by nothing else in this process: it
    // was inherited across exec for the engine alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
