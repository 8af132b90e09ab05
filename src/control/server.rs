//! The control socket server: a UNIX stream socket served from the
//! master's own single-threaded poll loop. No thread, and no call here
//! ever blocks: the loop asks [`ControlServer::interest`] and
//! [`ControlServer::deadline`], polls, and hands the ready fds to
//! [`ControlServer::service`].
//!
//! Safety of the master comes first, so every client is bounded: at most
//! [`Limits::max_connections`] at once, a request line of at most
//! [`Limits::max_line`] bytes, at most one reply buffered per connection
//! (the next request is not read while a reply waits: backpressure instead
//! of an output buffer that a client which never reads could grow), and
//! [`Limits::idle`] without progress closes it. Only the master's user and
//! root may talk to it: the socket file is mode 0600, and the peer's
//! credentials (`SO_PEERCRED`) are checked at accept, in case the mode
//! was widened.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{fchmod, Mode};

use super::protocol::{parse_request, reply_error, Request};
use crate::logging::CONTROL;

/// Bounds on what clients may cost the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are accepted, told so and closed.
    /// Default 32.
    pub max_connections: usize,
    /// The longest request line, in bytes without its newline. A longer
    /// one gets an error reply, then the connection is closed. Default
    /// 64 KiB.
    pub max_line: usize,
    /// A connection that makes no progress (reads nothing new, or cannot
    /// take its reply) for this long is closed. Default 10 s.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            max_line: 64 * 1024,
            idle: Duration::from_secs(10),
        }
    }
}

/// Who is on the other end of a connection (from `SO_PEERCRED`, taken
/// when it connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its process id.
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
}

// Requests answered per connection per service() call, so that one busy
// client cannot hold the master's loop; the rest is answered on the next
// call, which deadline() makes immediate.
const LINES_PER_CALL: usize = 16;
// Connections accepted per call, for the same reason.
const ACCEPTS_PER_CALL: usize = 16;
// How long accepting pauses when the process is out of fds (EMFILE):
// the listener stays readable, and polling it again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 8192;

struct Conn {
    stream: UnixStream,
    peer: Peer,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    last_progress: Instant,
    // The client shut its writing side: answer what is buffered, then close.
    eof: bool,
    // Close once the output is written (after an oversized line).
    closing: bool,
    dead: bool,
}

/// A listening control socket and its connections. See the module doc.
///
/// A worker forked from the master inherits copies of its fds: drop the
/// server there first thing (dropping in another process than the one
/// that bound it closes the fds and leaves the socket file alone).
/// Otherwise a worker keeps the listener alive: after the master dies,
/// clients would connect and wait instead of being refused, and a new
/// master would find the path live.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    // The socket file's (device, inode), to remove it only if still ours.
    file_id: (u64, u64),
    // The process that bound it: a forked worker dropping its copy must
    // not remove the master's file.
    owner_pid: u32,
    euid: u32,
    limits: Limits,
    conns: Vec<Conn>,
    accept_paused_until: Option<Instant>,
    work_pending: bool,
    last_service: Instant,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .finish()
    }
}

fn path_error(path: &Path, kind: io::ErrorKind, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("control socket {}: {what}", path.display()))
}

fn errno_error(path: &Path, e: Errno, what: &str) -> io::Error {
    path_error(
        path,
        io::Error::from(e).kind(),
        format!("{what}: {}", e.desc()),
    )
}

enum Probe {
    Live,
    Stale,
    Gone,
}

/// Connects to an existing socket file, without blocking, to learn
/// whether a master still listens there.
fn probe(path: &Path, addr: &UnixAddr) -> io::Result<Probe> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| errno_error(path, e, "socket"))?;
    match socket::connect(fd.as_raw_fd(), addr) {
        // EAGAIN: its backlog is full, so it is alive and busy.
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(Probe::Live),
        // Nobody listens: the file a killed master left behind.
        Err(Errno::ECONNREFUSED) => Ok(Probe::Stale),
        Err(Errno::ENOENT) => Ok(Probe::Gone),
        Err(e) => Err(errno_error(path, e, "cannot check the existing socket")),
    }
}

impl ControlServer {
    /// Listens on a UNIX stream socket at `path`, mode 0600.
    ///
    /// A socket file nobody listens on (left by a killed master) is
    /// replaced. If another process listens there, or `path` exists and is
    /// not a socket (a symlink included), it is left alone and the error
    /// names the path. Every fd is close-on-exec and non-blocking.
    ///
    /// The mode is set with `fchmod` on the socket before `bind`: Linux
    /// creates the file with the socket's mode less the umask, so the file
    /// is never, even for an instant, open to other users whatever the
    /// umask. It is then checked, and set to exactly 0600 by path if the
    /// umask took bits away (or on systems where that `fchmod` does not
    /// apply, where the umask-made mode stands for an instant; the
    /// credential check still refuses other users).
    pub fn bind(path: &Path, limits: Limits) -> io::Result<ControlServer> {
        let addr = UnixAddr::new(path).map_err(|e| errno_error(path, e, "invalid socket path"))?;
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(path_error(path, e.kind(), e)),
            Ok(m) if !m.file_type().is_socket() => {
                return Err(path_error(
                    path,
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; not replacing it",
                ))
            }
            Ok(_) => match probe(path, &addr)? {
                Probe::Live => {
                    return Err(path_error(
                        path,
                        io::ErrorKind::AddrInUse,
                        "another process (a running master?) accepts connections there",
                    ))
                }
                Probe::Stale => {
                    log::info!(target: CONTROL, "Replacing stale control socket {}", path.display());
                    match std::fs::remove_file(path) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => {
                            return Err(path_error(
                                path,
                                e.kind(),
                                format!("cannot remove stale socket: {e}"),
                            ))
                        }
                        _ => {}
                    }
                }
                Probe::Gone => {}
            },
        }
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| errno_error(path, e, "socket"))?;
        // Best effort: see the doc comment; the mode is checked below.
        let _ = fchmod(&fd, Mode::from_bits_truncate(0o600));
        match socket::bind(fd.as_raw_fd(), &addr) {
            Ok(()) => {}
            // Another master bound it between our check and now.
            Err(Errno::EADDRINUSE) => {
                return Err(path_error(
                    path,
                    io::ErrorKind::AddrInUse,
                    "already bound by another process",
                ))
            }
            Err(e) => return Err(errno_error(path, e, "bind")),
        }
        // From here on the file is ours: remove it if we fail.
        let cleanup = |e: io::Error| {
            let _ = std::fs::remove_file(path);
            e
        };
        let meta =
            std::fs::symlink_metadata(path).map_err(|e| cleanup(path_error(path, e.kind(), e)))?;
        if meta.mode() & 0o7777 != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| cleanup(path_error(path, e.kind(), format!("chmod 0600: {e}"))))?;
        }
        socket::listen(&fd, Backlog::new(64).expect("64 is a valid backlog"))
            .map_err(|e| cleanup(errno_error(path, e, "listen")))?;
        Ok(ControlServer {
            listener: UnixListener::from(fd),
            path: path.to_path_buf(),
            file_id: (meta.dev(), meta.ino()),
            owner_pid: std::process::id(),
            euid: nix::unistd::geteuid().as_raw(),
            limits,
            conns: Vec::new(),
            accept_paused_until: None,
            work_pending: false,
            last_service: Instant::now(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many client connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn interest_fds(&self) -> impl Iterator<Item = (BorrowedFd<'_>, PollFlags)> {
        let listener = self
            .accept_paused_until
            .is_none()
            .then(|| (self.listener.as_fd(), PollFlags::POLLIN));
        listener.into_iter().chain(self.conns.iter().map(|c| {
            let flags = if c.written < c.output.len() {
                PollFlags::POLLOUT
            } else if c.wants_input(self.limits.max_line) {
                PollFlags::POLLIN
            } else {
                // Still told of POLLHUP / POLLERR.
                PollFlags::empty()
            };
            (c.stream.as_fd(), flags)
        }))
    }

    /// The fds to poll and for what: the listener (POLLIN, unless
    /// accepting is paused for lack of fds) and each connection (POLLIN
    /// when it may send a request, POLLOUT while a reply waits).
    pub fn interest(&self) -> Vec<(RawFd, PollFlags)> {
        self.interest_fds()
            .map(|(fd, f)| (fd.as_raw_fd(), f))
            .collect()
    }

    /// The same as [`interest`](Self::interest), as `PollFd`s borrowing
    /// this server, for a loop that polls with `nix::poll::poll`.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        self.interest_fds()
            .map(|(fd, f)| PollFd::new(fd, f))
            .collect()
    }

    /// When [`service`](Self::service) must run next even if no fd is
    /// ready: the earliest idle timeout, the end of an accept pause, or
    /// at once (a past instant) when buffered requests wait for their
    /// turn. `None`: nothing is due.
    pub fn deadline(&self) -> Option<Instant> {
        if self.work_pending {
            return Some(self.last_service);
        }
        self.conns
            .iter()
            .map(|c| c.last_progress + self.limits.idle)
            .chain(self.accept_paused_until)
            .min()
    }

    /// Does what the ready fds allow, never blocking: accepts, reads,
    /// answers each complete request line with `exec` (a line that does
    /// not parse gets an error reply without reaching `exec`), writes
    /// replies, and closes connections that are done, broken or idle at
    /// `now`. `ready` holds `(fd, revents)` pairs from the poll; fds not
    /// this server's are ignored. `exec` returns one reply line, such as
    /// [`reply_ok`](super::protocol::reply_ok) makes (the newline is added
    /// here if missing).
    pub fn service(
        &mut self,
        ready: &[(RawFd, PollFlags)],
        now: Instant,
        exec: &mut dyn FnMut(Request, Peer) -> String,
    ) {
        self.last_service = now;
        let revents = |fd: RawFd| {
            ready
                .iter()
                .filter(|(f, _)| *f == fd)
                .fold(PollFlags::empty(), |acc, (_, r)| acc | *r)
        };
        let max_line = self.limits.max_line;
        for c in &mut self.conns {
            let r = revents(c.stream.as_raw_fd());
            if r.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
                c.dead = true;
                continue;
            }
            if c.written < c.output.len() {
                c.flush(now);
            }
            if r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) && c.wants_input(max_line) {
                c.read(now, max_line);
            }
            c.answer(now, max_line, exec);
        }
        let idle = self.limits.idle;
        self.conns.retain(|c| {
            let done = c.dead
                || (c.written == c.output.len() && (c.closing || (c.eof && c.input.is_empty())));
            let idle_out = now.saturating_duration_since(c.last_progress) >= idle;
            if idle_out && !done {
                log::debug!(
                    target: CONTROL,
                    "Closing idle control connection of pid {} uid {}",
                    c.peer.pid,
                    c.peer.uid
                );
            }
            !(done || idle_out)
        });

        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
        }
        // Accept only when polled ready, so a loop passing no readiness
        // (a timeout) does not pay for an accept(2) that would fail.
        if self.accept_paused_until.is_none()
            && revents(self.listener.as_raw_fd()).contains(PollFlags::POLLIN)
        {
            self.accept(now);
        }
        self.work_pending = self.conns.iter().any(|c| c.has_work(max_line));
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_CALL {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // EMFILE and the like: the pending connection stays
                    // queued, so pause instead of spinning on it.
                    log::warn!(target: CONTROL, "Cannot accept control connections: {e}");
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            };
            if let Some(conn) = self.admit(stream, now) {
                self.conns.push(conn);
            }
        }
    }

    /// Checks a new connection's credentials and the connection limit.
    fn admit(&self, stream: UnixStream, now: Instant) -> Option<Conn> {
        let refuse = |msg: String| {
            // One non-blocking try: a new socket's buffer is empty, so the
            // line fits; if not, closing says enough.
            let line = reply_error(&msg) + "\n";
            let _ = socket::send(
                stream.as_raw_fd(),
                line.as_bytes(),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
            None
        };
        let cred = match socket::getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(c) => c,
            Err(e) => {
                log::warn!(target: CONTROL, "Refused a control connection: cannot read its credentials: {e}");
                return refuse(format!("cannot read peer credentials: {e}"));
            }
        };
        let peer = Peer {
            pid: cred.pid(),
            uid: cred.uid(),
        };
        if peer.uid != self.euid && peer.uid != 0 {
            log::warn!(
                target: CONTROL,
                "Refused a control connection from pid {} uid {}: only uid {} and root may control this master",
                peer.pid,
                peer.uid,
                self.euid
            );
            return refuse(format!(
                "permission denied: uid {} may not control this master",
                peer.uid
            ));
        }
        if self.conns.len() >= self.limits.max_connections {
            log::warn!(
                target: CONTROL,
                "Refused a control connection from pid {} uid {}: {} connections are open (the limit)",
                peer.pid,
                peer.uid,
                self.conns.len()
            );
            return refuse(format!(
                "too many control connections ({} open); try again later",
                self.conns.len()
            ));
        }
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!(target: CONTROL, "Dropped a control connection: {e}");
            return None;
        }
        Some(Conn {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            last_progress: now,
            eof: false,
            closing: false,
            dead: false,
        })
    }

    /// Polls this server alone for at most `timeout` (less if its
    /// [`deadline`](Self::deadline) comes first), then runs
    /// [`service`](Self::service). For a loop that owns nothing else, and
    /// for tests; the master polls everything together instead.
    pub fn poll_once(
        &mut self,
        timeout: Duration,
        exec: &mut dyn FnMut(Request, Peer) -> String,
    ) -> io::Result<()> {
        let now = Instant::now();
        let timeout = self
            .deadline()
            .map_or(timeout, |d| timeout.min(d.saturating_duration_since(now)));
        // Round up: a 0.4 ms wait must not become a 0 ms busy poll.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let ready: Vec<(RawFd, PollFlags)> = {
            let mut fds = self.poll_fds();
            match nix::poll::poll(&mut fds, PollTimeout::try_from(ms).expect("0..=i32::MAX")) {
                Ok(_) => fds
                    .iter()
                    .filter_map(|p| Some((p.as_fd().as_raw_fd(), p.revents()?)))
                    .filter(|(_, r)| !r.is_empty())
                    .collect(),
                Err(Errno::EINTR) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        self.service(&ready, Instant::now(), exec);
        Ok(())
    }
}

impl Conn {
    /// Whether to read: nothing to write, and no complete request waits.
    fn wants_input(&self, max_line: usize) -> bool {
        self.written == self.output.len() && !self.eof && !self.closing && !self.has_line(max_line)
    }

    /// A complete (or oversized) request line is buffered.
    fn has_line(&self, max_line: usize) -> bool {
        self.input.len() > max_line
            || self.input.contains(&b'\n')
            || (self.eof && !self.input.is_empty())
    }

    /// Requests that could be answered now, without any fd being ready.
    fn has_work(&self, max_line: usize) -> bool {
        !self.dead && !self.closing && self.written == self.output.len() && self.has_line(max_line)
    }

    fn read(&mut self, now: Instant, max_line: usize) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    self.last_progress = now;
                    let had = self.input.len();
                    self.input.extend_from_slice(&buf[..n]);
                    // Stop at the first complete line: reading on would only
                    // buffer requests we do not answer yet.
                    if self.input[had..].contains(&b'\n') || self.input.len() > max_line {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// Answers buffered requests, one at a time, while each reply is
    /// written out at once.
    fn answer(
        &mut self,
        now: Instant,
        max_line: usize,
        exec: &mut dyn FnMut(Request, Peer) -> String,
    ) {
        for _ in 0..LINES_PER_CALL {
            if self.dead || self.closing || self.written < self.output.len() {
                return;
            }
            let line_end = self.input.iter().position(|&b| b == b'\n');
            let reply = match line_end {
                Some(end) if end <= max_line => {
                    let line: Vec<u8> = self.input.drain(..=end).collect();
                    answer_line(&line, self.peer, exec)
                }
                None if self.input.len() <= max_line => {
                    if !self.eof || self.input.is_empty() {
                        return;
                    }
                    // The client ended its last request with EOF, not \n.
                    let line = std::mem::take(&mut self.input);
                    answer_line(&line, self.peer, exec)
                }
                _ => {
                    self.input = Vec::new();
                    self.closing = true;
                    reply_error(format!("request line longer than {max_line} bytes"))
                }
            };
            self.output = reply.into_bytes();
            if self.output.last() != Some(&b'\n') {
                self.output.push(b'\n');
            }
            self.written = 0;
            self.flush(now);
        }
    }

    fn flush(&mut self, now: Instant) {
        while self.written < self.output.len() {
            match socket::send(
                self.stream.as_raw_fd(),
                &self.output[self.written..],
                // No SIGPIPE for a client that went away: the master may
                // not ignore that signal (C and Python embedders).
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    self.written += n;
                    self.last_progress = now;
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        // All written: drop the buffer (a status reply can be large).
        self.output = Vec::new();
        self.written = 0;
    }
}

fn answer_line(line: &[u8], peer: Peer, exec: &mut dyn FnMut(Request, Peer) -> String) -> String {
    match parse_request(line) {
        Ok(request) => exec(request, peer),
        Err(msg) => reply_error(msg),
    }
}

impl Drop for ControlServer {
    /// Removes the socket file if it is still the one this process bound
    /// (not after a fork, and not if another master replaced it since).
    fn drop(&mut self) {
        if std::process::id() != self.owner_pid {
            return;
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file_id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::reply_ok;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory for one test's socket (short: sun_path is 108 bytes).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "cty-srv-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            TempDir(p)
        }
        fn sock(&self) -> PathBuf {
            self.0.join("ctl.sock")
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn echo(r: Request, p: Peer) -> String {
        let mut m = serde_json::Map::new();
        m.insert("echo".into(), format!("{r:?} from uid {}", p.uid).into());
        reply_ok(m)
    }

    fn client(path: &Path) -> UnixStream {
        let c = UnixStream::connect(path).unwrap();
        c.set_nonblocking(true).unwrap();
        c
    }

    /// Runs the server (test-side loop) until `client` has a whole line to
    /// read or the client sees EOF; returns what it read. Bounded to 5 s.
    fn read_reply(
        server: &mut ControlServer,
        client: &UnixStream,
        exec: &mut dyn FnMut(Request, Peer) -> String,
    ) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while Instant::now() < end {
            server.poll_once(Duration::from_millis(10), exec).unwrap();
            let mut buf = [0u8; 4096];
            match (&*client).read(&mut buf) {
                Ok(0) => return (!got.is_empty()).then(|| String::from_utf8(got).unwrap()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\n") {
                        return Some(String::from_utf8(got).unwrap());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("{e}"),
            }
        }
        panic!(
            "no reply within 5 s (got {:?})",
            String::from_utf8_lossy(&got)
        );
    }

    /// Runs the server until `client` reads EOF (the server closed it).
    fn expect_closed(
        server: &mut ControlServer,
        client: &UnixStream,
        exec: &mut dyn FnMut(Request, Peer) -> String,
    ) {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            server.poll_once(Duration::from_millis(10), exec).unwrap();
            let mut buf = [0u8; 4096];
            match (&*client).read(&mut buf) {
                Ok(0) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the server did not close the connection within 5 s");
    }

    fn ask(server: &mut ControlServer, c: &UnixStream, line: &str) -> String {
        (&*c).write_all(line.as_bytes()).unwrap();
        read_reply(server, c, &mut echo).expect("a reply")
    }

    #[test]
    fn round_trip_and_bad_requests() {
        let dir = TempDir::new();
        let mut server = ControlServer::bind(&dir.sock(), Limits::default()).unwrap();
        let c = client(&dir.sock());
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(
            ask(&mut server, &c, "{\"cmd\":\"status\"}\n"),
            format!("{{\"ok\":true,\"protocol\":1,\"echo\":\"Status from uid {me}\"}}\n")
        );
        // Malformed JSON: an error reply, and the connection still works.
        let r = ask(&mut server, &c, "{\"cmd\":\n");
        assert!(
            r.starts_with("{\"ok\":false,\"protocol\":1,\"error\":\"malformed JSON"),
            "{r}"
        );
        let r = ask(
            &mut server,
            &c,
            "{\"cmd\":\"scale\",\"service\":\"a\",\"workers\":-1}\n",
        );
        assert!(r.contains("must not be negative"), "{r}");
        // Two requests in one write get two replies, in order.
        (&c).write_all(b"{\"cmd\":\"stop\"}\n{\"cmd\":\"reload\"}\n")
            .unwrap();
        let mut got = String::new();
        while got.lines().count() < 2 {
            got += &read_reply(&mut server, &c, &mut echo).unwrap();
        }
        assert!(
            got.find("Stop").unwrap() < got.find("Reload").unwrap(),
            "{got}"
        );
        assert_eq!(server.connections(), 1);
        // A last request ended by EOF instead of a newline is answered.
        (&c).write_all(b"{\"cmd\":\"metrics\"}").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let r = read_reply(&mut server, &c, &mut echo).unwrap();
        assert!(r.contains("Metrics"), "{r}");
        expect_closed(&mut server, &c, &mut echo);
        assert_eq!(server.connections(), 0);
    }

    #[test]
    fn oversized_line_gets_an_error_then_close() {
        let dir = TempDir::new();
        let limits = Limits {
            max_line: 100,
            ..Limits::default()
        };
        let mut server = ControlServer::bind(&dir.sock(), limits).unwrap();
        // Exactly max_line bytes is fine.
        let c = client(&dir.sock());
        let line = format!("{{\"cmd\":\"status\"}}{}\n", " ".repeat(100 - 16));
        assert_eq!(line.len(), 101);
        assert!(ask(&mut server, &c, &line).contains("\"ok\":true"));
        // One more byte is not, with or without a newline yet.
        for tail in ["\n", ""] {
            let c = client(&dir.sock());
            let line = format!("{{\"cmd\":\"status\"}}{}{tail}", " ".repeat(101 - 16));
            let r = ask(&mut server, &c, &line);
            assert_eq!(
                r,
                "{\"ok\":false,\"protocol\":1,\"error\":\"request line longer than 100 bytes\"}\n"
            );
            expect_closed(&mut server, &c, &mut echo);
        }
        // A big flood without newline does not grow the buffer unbounded.
        let c = client(&dir.sock());
        let _ = (&c).write_all(&[b'x'; 50_000]);
        let r = read_reply(&mut server, &c, &mut echo).unwrap();
        assert!(r.contains("longer than 100 bytes"), "{r}");
        expect_closed(&mut server, &c, &mut echo);
    }

    #[test]
    fn big_reply_to_a_slow_reader_is_written_without_blocking() {
        let dir = TempDir::new();
        let mut server = ControlServer::bind(&dir.sock(), Limits::default()).unwrap();
        let big = reply_ok({
            let mut m = serde_json::Map::new();
            m.insert("blob".into(), "y".repeat(4 << 20).into());
            m
        });
        let mut exec = |_: Request, _: Peer| big.clone();
        let c = client(&dir.sock());
        (&c).write_all(b"{\"cmd\":\"status\"}\n{\"cmd\":\"status\"}\n")
            .unwrap();
        // The client does not read yet: every service() returns promptly.
        for _ in 0..20 {
            let t = Instant::now();
            server
                .poll_once(Duration::from_millis(5), &mut exec)
                .unwrap();
            assert!(t.elapsed() < Duration::from_millis(500));
        }
        // Then it reads both replies whole.
        let mut total = 0;
        let mut lines = 0;
        let end = Instant::now() + Duration::from_secs(10);
        while lines < 2 && Instant::now() < end {
            server
                .poll_once(Duration::from_millis(5), &mut exec)
                .unwrap();
            let mut buf = vec![0u8; 1 << 20];
            if let Ok(n) = (&c).read(&mut buf) {
                total += n;
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
            }
        }
        assert_eq!((lines, total), (2, 2 * (big.len() + 1)));
    }

    #[test]
    fn silent_client_cannot_stall_and_idles_out() {
        let dir = TempDir::new();
        let limits = Limits {
            idle: Duration::from_millis(300),
            ..Limits::default()
        };
        let mut server = ControlServer::bind(&dir.sock(), limits).unwrap();
        let silent = client(&dir.sock());
        let start = Instant::now();
        server
            .poll_once(Duration::from_millis(50), &mut echo)
            .unwrap();
        assert_eq!(server.connections(), 1);
        let d = server.deadline().expect("an idle deadline");
        assert!(d <= Instant::now() + Duration::from_millis(300));
        // Others are served meanwhile.
        let other = client(&dir.sock());
        assert!(ask(&mut server, &other, "{\"cmd\":\"stop\"}\n").contains("Stop"));
        expect_closed(&mut server, &silent, &mut echo);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // The other, also silent since its reply, idles out too.
        expect_closed(&mut server, &other, &mut echo);
        assert_eq!(server.connections(), 0);
        assert_eq!(server.deadline(), None);
    }

    #[test]
    fn connections_beyond_the_limit_are_refused() {
        let dir = TempDir::new();
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let mut server = ControlServer::bind(&dir.sock(), limits).unwrap();
        let kept: Vec<UnixStream> = (0..3).map(|_| client(&dir.sock())).collect();
        for c in &kept {
            assert!(ask(&mut server, c, "{\"cmd\":\"status\"}\n").contains("\"ok\":true"));
        }
        // Several extra clients at once: each told so, then closed.
        let extra: Vec<UnixStream> = (0..5).map(|_| client(&dir.sock())).collect();
        for c in &extra {
            let r = read_reply(&mut server, c, &mut echo).unwrap();
            assert!(r.contains("too many control connections (3 open)"), "{r}");
            expect_closed(&mut server, c, &mut echo);
        }
        assert_eq!(server.connections(), 3);
        // The first ones still work.
        for c in &kept {
            assert!(ask(&mut server, c, "{\"cmd\":\"reload\"}\n").contains("Reload"));
        }
        // A slot freed is reusable.
        drop(kept);
        let end = Instant::now() + Duration::from_secs(5);
        while server.connections() > 0 && Instant::now() < end {
            server
                .poll_once(Duration::from_millis(10), &mut echo)
                .unwrap();
        }
        assert_eq!(server.connections(), 0);
        let c = client(&dir.sock());
        assert!(ask(&mut server, &c, "{\"cmd\":\"stop\"}\n").contains("Stop"));
    }

    #[test]
    fn socket_is_0600_cloexec_nonblocking_and_removed_on_drop() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        let dir = TempDir::new();
        let path = dir.sock();
        // Even under a permissive umask.
        let old = nix::sys::stat::umask(Mode::empty());
        let server = ControlServer::bind(&path, Limits::default());
        nix::sys::stat::umask(old);
        let server = server.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let fd = server.listener.as_fd();
        let fd_flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
        let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK));
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn accepted_connections_are_cloexec_and_nonblocking() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        let dir = TempDir::new();
        let mut server = ControlServer::bind(&dir.sock(), Limits::default()).unwrap();
        let c = client(&dir.sock());
        assert!(ask(&mut server, &c, "{\"cmd\":\"stop\"}\n").contains("Stop"));
        let fd = server.conns[0].stream.as_fd();
        assert!(
            FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap())
                .contains(FdFlag::FD_CLOEXEC)
        );
        assert!(
            OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap())
                .contains(OFlag::O_NONBLOCK)
        );
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new();
        let path = dir.sock();
        // What a killed master leaves: a socket file whose listener is gone.
        let s = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(s.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        socket::listen(&s, Backlog::new(1).unwrap()).unwrap();
        drop(s);
        let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
        // Only a new listener can answer.
        let c = client(&path);
        assert!(ask(&mut server, &c, "{\"cmd\":\"stop\"}\n").contains("Stop"));
    }

    #[test]
    fn live_socket_is_refused() {
        let dir = TempDir::new();
        let path = dir.sock();
        let mut first = ControlServer::bind(&path, Limits::default()).unwrap();
        let err = ControlServer::bind(&path, Limits::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        assert!(err.to_string().contains("accepts connections"), "{err}");
        // The refused attempt left the live one alone.
        let c = client(&path);
        assert!(ask(&mut first, &c, "{\"cmd\":\"stop\"}\n").contains("Stop"));
        // A live master with a full accept queue still counts as live.
        let mut queued = Vec::new();
        for _ in 0..200 {
            let s = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            if socket::connect(s.as_raw_fd(), &UnixAddr::new(&path).unwrap()).is_err() {
                break;
            }
            queued.push(s);
        }
        let err = ControlServer::bind(&path, Limits::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }

    #[test]
    fn non_socket_path_is_refused() {
        let dir = TempDir::new();
        let path = dir.sock();
        std::fs::write(&path, "precious").unwrap();
        let err = ControlServer::bind(&path, Limits::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = ControlServer::bind(&path, Limits::default()).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        // A path too long for sun_path is named too.
        let long = dir.0.join("x".repeat(200));
        let err = ControlServer::bind(&long, Limits::default()).unwrap_err();
        assert!(err.to_string().contains("invalid socket path"), "{err}");
    }

    #[test]
    fn drop_leaves_a_replaced_file_alone() {
        let dir = TempDir::new();
        let path = dir.sock();
        let server = ControlServer::bind(&path, Limits::default()).unwrap();
        // Someone replaced the file (e.g. a new master after ours hung).
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "other").unwrap();
        drop(server);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
    }

    #[test]
    fn interest_and_deadline_follow_the_connections() {
        let dir = TempDir::new();
        let mut server = ControlServer::bind(&dir.sock(), Limits::default()).unwrap();
        let lfd = server.listener.as_raw_fd();
        assert_eq!(server.interest(), vec![(lfd, PollFlags::POLLIN)]);
        assert_eq!(server.deadline(), None);
        let c = client(&dir.sock());
        // service() with no readiness does nothing (the loop timed out).
        server.service(&[], Instant::now(), &mut echo);
        assert_eq!(server.connections(), 0);
        server.service(&[(lfd, PollFlags::POLLIN)], Instant::now(), &mut echo);
        assert_eq!(server.connections(), 1);
        let cfd = server.conns[0].stream.as_raw_fd();
        assert_eq!(
            server.interest(),
            vec![(lfd, PollFlags::POLLIN), (cfd, PollFlags::POLLIN)]
        );
        assert!(server.deadline().is_some());
        drop(c);
    }
}
