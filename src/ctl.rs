//! `cotyledon-ctl`, the control socket's command-line client. One
//! implementation for every face: the Rust binary calls [`main`], and the
//! C and Python faces can call it with their own argument lists.
//!
//! ```text
//! cotyledon-ctl --socket PATH status [--json] [--check] | reload
//!               | scale SERVICE N | restart SERVICE WORKER | stop | metrics
//! ```
//!
//! Exit codes: 0 success, 1 error (the master's error reply, a broken
//! reply, a timeout; `status --check`: unhealthy), 2 usage error, 3 no
//! master at that socket (ENOENT or ECONNREFUSED).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::control::protocol::{parse_reply, Reply, Request, ServiceRef, MAX_WORKERS_PER_SERVICE};
use crate::status::{LastExit, Status};

/// The environment variable read when `--socket` is not given.
pub const SOCKET_ENV: &str = "COTYLEDON_CONTROL_SOCKET";

/// How long connecting, sending and receiving may take in all.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest reply read (a status of thousands of workers fits).
const MAX_REPLY: usize = 64 << 20;

const USAGE: &str = "\
usage: cotyledon-ctl [--socket PATH] COMMAND

commands:
  status [--json] [--check]  the master's services and workers; --json prints
                             the status as JSON; --check exits 0 only when every
                             wanted worker runs (else 1, saying why)
  reload                     reload, as SIGHUP does
  scale SERVICE N            set a service's worker count (0..10000)
  restart SERVICE WORKER     stop one worker; it is forked again with its id
  stop                       graceful stop, as SIGTERM does
  metrics                    the Prometheus metrics

SERVICE is a service id (digits) or name. The socket defaults to
$COTYLEDON_CONTROL_SOCKET.

exit status: 0 success, 1 error, 2 usage error, 3 no master at that socket
";

/// Runs the command line `args` (without the program name), printing to
/// stdout and stderr; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    run(
        args,
        std::env::var_os(SOCKET_ENV),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

enum Command {
    Status { json: bool, check: bool },
    Metrics,
    Other(Request),
}

struct Usage(String);

fn parse_args(
    args: Vec<String>,
    env_socket: Option<OsString>,
) -> Result<Option<(PathBuf, Command)>, Usage> {
    let mut socket: Option<PathBuf> = None;
    let mut json = false;
    let mut check = false;
    let mut words = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--socket" => {
                let v = it
                    .next()
                    .ok_or_else(|| Usage("--socket needs a PATH".into()))?;
                socket = Some(v.into());
            }
            "--json" => json = true,
            "--check" => check = true,
            _ if a.starts_with("--socket=") => socket = Some(a["--socket=".len()..].into()),
            _ if a.starts_with('-') && a.len() > 1 && a.parse::<i64>().is_err() => {
                return Err(Usage(format!("unknown option {a:?}")))
            }
            _ => words.push(a),
        }
    }
    let (cmd, rest) = words
        .split_first()
        .ok_or_else(|| Usage("missing command".into()))?;
    let arity = |n: usize| {
        if rest.len() == n {
            Ok(())
        } else {
            Err(Usage(format!(
                "{cmd} takes {n} argument(s), got {}",
                rest.len()
            )))
        }
    };
    if (json || check) && cmd != "status" {
        return Err(Usage("--json and --check go with status".into()));
    }
    let command = match cmd.as_str() {
        "status" => {
            arity(0)?;
            Command::Status { json, check }
        }
        "metrics" => arity(0).map(|()| Command::Metrics)?,
        "reload" => arity(0).map(|()| Command::Other(Request::Reload))?,
        "stop" => arity(0).map(|()| Command::Other(Request::Stop))?,
        "scale" => {
            arity(2)?;
            let workers = number(&rest[1], "N", MAX_WORKERS_PER_SERVICE)?;
            Command::Other(Request::Scale {
                service: service_ref(&rest[0]),
                workers,
            })
        }
        "restart" => {
            arity(2)?;
            let worker = number(&rest[1], "WORKER", MAX_WORKERS_PER_SERVICE - 1)?;
            Command::Other(Request::Restart {
                service: service_ref(&rest[0]),
                worker: worker as usize,
            })
        }
        other => return Err(Usage(format!("unknown command {other:?}"))),
    };
    let socket = socket
        .or_else(|| env_socket.filter(|s| !s.is_empty()).map(PathBuf::from))
        .ok_or_else(|| Usage(format!("no socket: pass --socket PATH or set {SOCKET_ENV}")))?;
    Ok(Some((socket, command)))
}

/// Digits name a service by id; anything else by name.
fn service_ref(s: &str) -> ServiceRef {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(id) = s.parse() {
            return ServiceRef::Id(id);
        }
    }
    ServiceRef::Name(s.to_string())
}

fn number(s: &str, what: &str, max: i64) -> Result<i64, Usage> {
    match s.parse::<i64>() {
        Ok(n) if (0..=max).contains(&n) => Ok(n),
        Ok(n) => Err(Usage(format!("{what} must be in 0..={max}, got {n}"))),
        Err(_) => Err(Usage(format!("{what} must be an integer, got {s:?}"))),
    }
}

/// [`main`] with its environment and output passed in (for tests).
fn run(
    args: Vec<String>,
    env_socket: Option<OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let (socket, command) = match parse_args(args, env_socket) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            let _ = out.write_all(USAGE.as_bytes());
            return 0;
        }
        Err(Usage(msg)) => {
            let _ = write!(err, "cotyledon-ctl: {msg}\n{USAGE}");
            return 2;
        }
    };
    let request = match &command {
        Command::Status { .. } => Request::Status,
        Command::Metrics => Request::Metrics,
        Command::Other(r) => r.clone(),
    };
    let payload = match exchange(&socket, &request) {
        Ok(Reply::Ok(payload)) => payload,
        Ok(Reply::Error(msg)) => {
            let _ = writeln!(err, "cotyledon-ctl: the master refused: {msg}");
            return 1;
        }
        Err(Failure::NoMaster(msg)) => {
            let _ = writeln!(err, "cotyledon-ctl: {msg}");
            return 3;
        }
        Err(Failure::Other(msg)) => {
            let _ = writeln!(err, "cotyledon-ctl: {msg}");
            return 1;
        }
    };
    let broken = |err: &mut dyn Write, what: &str| {
        let _ = writeln!(
            err,
            "cotyledon-ctl: the master's reply has no valid {what:?}"
        );
        1
    };
    match command {
        Command::Status { json, check } => {
            let Some(status) = payload
                .get("status")
                .and_then(|v| serde_json::from_value::<Status>(v.clone()).ok())
            else {
                return broken(err, "status");
            };
            if json {
                let text = serde_json::to_string_pretty(&status).expect("Status is JSON-able");
                let _ = writeln!(out, "{text}");
            } else if !check {
                let _ = out.write_all(render_status(&status, unix_now()).as_bytes());
            }
            if !check {
                return 0;
            }
            if status.healthy() {
                if !json {
                    let _ = writeln!(out, "healthy");
                }
                return 0;
            }
            let reasons = unhealthy_reasons(&status);
            let _ = writeln!(out, "unhealthy: {}", reasons.join("; "));
            1
        }
        Command::Metrics => match payload.get("metrics").and_then(|m| m.as_str()) {
            Some(text) => {
                let _ = out.write_all(text.as_bytes());
                0
            }
            None => broken(err, "metrics"),
        },
        Command::Other(_) => {
            let msg = payload
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("ok");
            let _ = writeln!(out, "{msg}");
            0
        }
    }
}

enum Failure {
    NoMaster(String),
    Other(String),
}

/// Connects, sends one request line and reads one reply line, all
/// within [`TIMEOUT`].
fn exchange(path: &Path, request: &Request) -> Result<Reply, Failure> {
    let deadline = Instant::now() + TIMEOUT;
    let at = |e: &dyn std::fmt::Display| Failure::Other(format!("{}: {e}", path.display()));
    let stream = connect(path, deadline)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left())).map_err(|e| at(&e))?;
    let line = request.to_line() + "\n";
    // A refused connection is closed at once, maybe before the request
    // is sent; its error line is still there to read, so read on.
    let sent = (&stream).write_all(line.as_bytes());
    if let Err(e) = &sent {
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(at(&format!("sending the request: {e}")));
        }
    }
    let closed = || match &sent {
        Err(e) => at(&format!("the master closed the connection: {e}")),
        Ok(()) => at(&"the master closed the connection without a reply"),
    };
    let mut reply = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(at(&format!("no reply within {}s", TIMEOUT.as_secs())));
        }
        stream.set_read_timeout(Some(left())).map_err(|e| at(&e))?;
        match (&stream).read(&mut buf) {
            Ok(0) => return Err(closed()),
            Ok(n) => {
                let had = reply.len();
                reply.extend_from_slice(&buf[..n]);
                if let Some(i) = reply[had..].iter().position(|&b| b == b'\n') {
                    reply.truncate(had + i);
                    return parse_reply(&reply).map_err(|e| at(&e));
                }
                if reply.len() > MAX_REPLY {
                    return Err(at(&"the reply is too long"));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(closed()),
            Err(e) => return Err(at(&format!("reading the reply: {e}"))),
        }
    }
}

/// Connects without waiting past `deadline`: a master whose accept queue
/// is full makes a UNIX socket's connect fail with EAGAIN (non-blocking)
/// or block (blocking), so try again until the deadline.
fn connect(path: &Path, deadline: Instant) -> Result<UnixStream, Failure> {
    let other = |e: &dyn std::fmt::Display| Failure::Other(format!("{}: {e}", path.display()));
    let addr = UnixAddr::new(path).map_err(|e| other(&e.desc()))?;
    loop {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| other(&e.desc()))?;
        match socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false).map_err(|e| other(&e))?;
                return Ok(stream);
            }
            Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED)) => {
                return Err(Failure::NoMaster(format!(
                    "no master at {}: {}",
                    path.display(),
                    e.desc()
                )))
            }
            Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::EAGAIN) => return Err(other(&"the master accepts no connection (busy)")),
            Err(e) => return Err(other(&e.desc())),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `3d04h`, `2h03m`, `4m05s`, `9s`.
fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn last_exit(e: &Option<LastExit>) -> String {
    match e {
        None => "-".into(),
        Some(LastExit::Exit { code }) => format!("exit {code}"),
        Some(LastExit::Signal { name, .. }) => format!("signal {name}"),
        Some(LastExit::Deadline { name, .. }) => format!("{name} (stop deadline)"),
        Some(LastExit::Lost) => "lost".into(),
    }
}

/// The human table of `status`, with uptimes as of `now` (Unix seconds).
fn render_status(s: &Status, now: f64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let state = serde_json::to_value(s.state).expect("state is JSON-able");
    let init = s
        .init_pid
        .map_or(String::new(), |p| format!(", init pid {p}"));
    let _ = writeln!(
        o,
        "master pid {}{init}, {}, up {}",
        s.pid,
        state.as_str().unwrap_or("?"),
        human_duration(now - s.started_at)
    );
    match (s.limiter.waiting, s.limiter.until) {
        (false, _) => o.push_str("fork-rate limiter: not waiting\n"),
        (true, Some(t)) => {
            let _ = writeln!(
                o,
                "fork-rate limiter: forks held back for {:.1}s",
                (t - now).max(0.0)
            );
        }
        (true, None) => o.push_str("fork-rate limiter: forks held back\n"),
    }
    if let Some(stop) = &s.stopped_by {
        let _ = writeln!(
            o,
            "stopped by a restart policy: {} (exit status {})",
            stop.reason, stop.status
        );
    }
    for svc in &s.services {
        let c = &svc.counters;
        let _ = writeln!(
            o,
            "\nservice {} {:?}: {} wanted, {} running; starts {}, restarts {}, exits {} clean / {} error / {} signal, limiter waits {}, reloads {}",
            svc.id, svc.name, svc.workers.max(0), svc.running, c.starts, c.restarts,
            c.exits_clean, c.exits_error, c.exits_signal, c.limiter_waits, c.reloads
        );
        if let Some(policy) = render_policy(svc) {
            let _ = writeln!(o, "  {policy}");
        }
        let _ = writeln!(
            o,
            "  {:<7} {:<8} {:<8} {:<9} {:<24} STOPPING",
            "WORKER", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
        );
        for w in &svc.worker_list {
            let pid = w.pid.map_or("-".into(), |p| p.to_string());
            let up = match (w.pid, w.started_at) {
                (Some(_), Some(t)) => human_duration(now - t),
                _ => "-".into(),
            };
            let _ = writeln!(
                o,
                "  {:<7} {:<8} {:<8} {:<9} {:<24} {}",
                w.worker_id,
                pid,
                up,
                w.restarts,
                last_exit(&w.last_exit),
                if w.stopping { "yes" } else { "no" }
            );
            // What its restart policy says, when it says something.
            if w.finished {
                o.insert_str(o.len() - 1, "  finished");
            } else if let (None, Some(t)) = (w.pid, w.restart_at) {
                let note = format!("  restarting in {:.1}s", (t - now).max(0.0));
                o.insert_str(o.len() - 1, &note);
            }
        }
    }
    o
}

/// The service's restart policy in words, unless it is the default.
fn render_policy(svc: &crate::status::ServiceStatus) -> Option<String> {
    let p = &svc.policy;
    if p.restart == "always" && !p.stop_on_exit && p.backoff.is_none() && p.give_up.is_none() {
        return None;
    }
    let mut parts = vec![format!("restart {}", p.restart)];
    if p.stop_on_exit {
        parts.push("stop on exit".into());
    }
    if let Some(b) = &p.backoff {
        parts.push(format!(
            "backoff {}s to {}s (jitter {}, stable after {}s)",
            b.base, b.max, b.jitter, b.stable
        ));
    }
    if let Some(g) = &p.give_up {
        parts.push(format!(
            "give up after {} failures within {}s",
            g.failures, g.window
        ));
    }
    Some(format!(
        "policy: {}; failures {}, backoff waits {}",
        parts.join(", "),
        svc.counters.failures,
        svc.counters.backoff_waits
    ))
}

/// Why [`Status::healthy`] is false, in words (empty when it is true).
fn unhealthy_reasons(s: &Status) -> Vec<String> {
    use crate::status::ManagerState;
    let mut r = Vec::new();
    if s.state == ManagerState::Stopping {
        r.push("the master is stopping".to_string());
    }
    if s.limiter.waiting {
        r.push("the fork-rate limiter holds forks back".to_string());
    }
    for svc in &s.services {
        for id in 0..svc.workers.max(0) as usize {
            let mine = || svc.worker_list.iter().filter(|w| w.worker_id == id);
            if mine().any(|w| w.finished || (w.pid.is_some() && !w.stopping)) {
                continue;
            }
            let what = if mine().any(|w| w.pid.is_some()) {
                "is stopping"
            } else if mine().any(|w| w.restart_at.is_some()) {
                "waits for its backoff"
            } else {
                "is not running"
            };
            r.push(format!(
                "service {:?} (id {}): worker {id} {what}",
                svc.name, svc.id
            ));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{metrics_reply, reply_error, reply_ok, status_reply};
    use crate::control::{ControlServer, Limits, Peer};
    use crate::status::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    fn sample(healthy: bool) -> Status {
        let worker = |id, pid: Option<i32>| WorkerStatus {
            worker_id: id,
            pid,
            started_at: pid.map(|_| 1000.0),
            restarts: id as u64,
            last_exit: (id == 1).then_some(LastExit::Signal {
                signal: 9,
                name: "SIGKILL".into(),
            }),
            stopping: false,
            finished: false,
            restart_at: None,
            failures: 0,
            restarted: false,
        };
        Status {
            pid: 4242,
            state: ManagerState::Running,
            started_at: 900.0,
            services: vec![ServiceStatus {
                id: 0,
                name: "api".into(),
                key: None,
                workers: 2,
                running: if healthy { 2 } else { 1 },
                worker_list: vec![worker(0, Some(4243)), worker(1, healthy.then_some(4244))],
                counters: Counters {
                    starts: 3,
                    restarts: 1,
                    exits_signal: 1,
                    ..Counters::default()
                },
                policy: PolicyStatus::default(),
            }],
            limiter: LimiterStatus {
                waiting: false,
                until: None,
            },
            init_pid: None,
            stopped_by: None,
        }
    }

    #[test]
    fn status_table_names_the_init() {
        let mut s = sample(true);
        let now = s.started_at + 5.0;
        assert!(render_status(&s, now).starts_with("master pid 4242, running, up "));
        s.init_pid = Some(1);
        let table = render_status(&s, now);
        assert!(
            table.starts_with("master pid 4242, init pid 1, running, up "),
            "{table}"
        );
    }

    fn run_ctl(args: &[&str], env: Option<&Path>) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(
            args.iter().map(|s| s.to_string()).collect(),
            env.map(|p| p.as_os_str().to_owned()),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// A ControlServer answered by a thread, as the master's loop would;
    /// stopped and joined on drop.
    struct TestMaster {
        dir: PathBuf,
        path: PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
        seen: Arc<Mutex<Vec<Request>>>,
    }

    impl TestMaster {
        fn start(status: Status) -> TestMaster {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "cty-ctl-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            let path = dir.join("ctl.sock");
            let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (stop2, seen2) = (stop.clone(), seen.clone());
            let thread = std::thread::spawn(move || {
                let mut exec = |r: Request, _: Peer| {
                    seen2.lock().unwrap().push(r.clone());
                    match r {
                        Request::Status => status_reply(&status),
                        Request::Metrics => metrics_reply(&crate::metrics::render(&status)),
                        Request::Scale { workers, .. } if workers > 5 => {
                            reply_error("not that many")
                        }
                        _ => reply_ok(serde_json::Map::new()),
                    }
                };
                let end = Instant::now() + Duration::from_secs(30);
                while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                    server
                        .poll_once(Duration::from_millis(20), &mut exec)
                        .unwrap();
                }
            });
            TestMaster {
                dir,
                path,
                stop,
                thread: Some(thread),
                seen,
            }
        }
    }

    impl Drop for TestMaster {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &[][..],
            &["--socket", "/x"],
            &["--socket"],
            &["--socket", "/x", "frobnicate"],
            &["--socket", "/x", "status", "extra"],
            &["--socket", "/x", "scale", "api"],
            &["--socket", "/x", "scale", "api", "four"],
            &["--socket", "/x", "scale", "api", "-1"],
            &["--socket", "/x", "scale", "api", "10001"],
            &["--socket", "/x", "restart", "api", "10000"],
            &["--socket", "/x", "restart", "api"],
            &["--socket", "/x", "reload", "--json"],
            &["--socket", "/x", "--verbose", "status"],
            &["status"], // no socket, no env
        ] {
            let (code, out, err) = run_ctl(args, None);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(out.is_empty());
            assert!(
                err.starts_with("cotyledon-ctl: ") && err.contains("usage:"),
                "{err}"
            );
        }
        let (_, _, err) = run_ctl(&["status"], None);
        assert!(err.contains("COTYLEDON_CONTROL_SOCKET"), "{err}");
    }

    #[test]
    fn help_exits_0() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["--socket", "/x", "status", "--help"],
        ] {
            let (code, out, err) = run_ctl(args, None);
            assert_eq!((code, err.as_str()), (0, ""));
            assert!(out.starts_with("usage: cotyledon-ctl"));
        }
    }

    #[test]
    fn no_master_exits_3() {
        let dir = std::env::temp_dir().join(format!("cty-ctl-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // ENOENT.
        let missing = dir.join("missing.sock");
        let (code, _, err) = run_ctl(&["--socket", missing.to_str().unwrap(), "status"], None);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("no master at") && err.contains("missing.sock"),
            "{err}"
        );
        // ECONNREFUSED: a socket file nobody listens on (bound, never listening).
        let stale = dir.join("stale.sock");
        let _ = std::fs::remove_file(&stale);
        let s = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(s.as_raw_fd(), &UnixAddr::new(&stale).unwrap()).unwrap();
        // The env var is used when --socket is absent.
        let (code, _, err) = run_ctl(&["status"], Some(&stale));
        assert_eq!(code, 3, "{err}");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_table_json_and_check() {
        let m = TestMaster::start(sample(true));
        let sock = m.path.to_str().unwrap();
        let (code, out, err) = run_ctl(&["--socket", sock, "status"], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("master pid 4242, running, up "), "{out}");
        assert!(
            out.contains("service 0 \"api\": 2 wanted, 2 running"),
            "{out}"
        );
        assert!(out.contains("signal SIGKILL"), "{out}");
        assert!(out.contains("  1       4244 "), "{out}");

        let (code, out, _) = run_ctl(&["--socket", sock, "status", "--json"], None);
        assert_eq!(code, 0);
        let back: Status = serde_json::from_str(&out).unwrap();
        assert_eq!(back, sample(true));

        let (code, out, _) = run_ctl(&["status", "--check"], Some(&m.path));
        assert_eq!((code, out.as_str()), (0, "healthy\n"));
        assert_eq!(m.seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn check_fails_and_says_why() {
        let m = TestMaster::start(sample(false));
        let (code, out, _) = run_ctl(
            &["--socket", m.path.to_str().unwrap(), "status", "--check"],
            None,
        );
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "unhealthy: service \"api\" (id 0): worker 1 is not running\n"
        );
    }

    #[test]
    fn status_table_shows_the_restart_policy() {
        let mut s = sample(false);
        let svc = &mut s.services[0];
        svc.policy = PolicyStatus {
            restart: "on-failure".into(),
            stop_on_exit: true,
            backoff: Some(BackoffStatus {
                base: 0.5,
                max: 30.0,
                jitter: 0.1,
                stable: 10.0,
            }),
            give_up: Some(GiveUpStatus {
                failures: 5,
                window: 60.0,
            }),
        };
        svc.counters.failures = 4;
        svc.counters.backoff_waits = 3;
        svc.worker_list[0].finished = true;
        svc.worker_list[0].pid = None;
        svc.worker_list[1].restart_at = Some(1002.5);
        s.stopped_by = Some(StopStatus {
            status: 125,
            reason: "Service api gave up: 5 failures within 60s".into(),
        });
        let out = render_status(&s, 1000.0);
        for want in [
            "stopped by a restart policy: Service api gave up: 5 failures within 60s (exit status 125)\n",
            "  policy: restart on-failure, stop on exit, backoff 0.5s to 30s (jitter 0.1, stable after 10s), \
             give up after 5 failures within 60s; failures 4, backoff waits 3\n",
            " no  finished\n",
            " no  restarting in 2.5s\n",
        ] {
            assert!(out.contains(want), "{want:?} in:\n{out}");
        }
        // A finished id is not missing; one backing off is.
        s.state = crate::status::ManagerState::Running;
        assert_eq!(
            unhealthy_reasons(&s),
            ["service \"api\" (id 0): worker 1 waits for its backoff"]
        );
        assert!(!render_status(&sample(true), 1000.0).contains("policy:"));
    }

    #[test]
    fn metrics_commands_and_error_reply() {
        let m = TestMaster::start(sample(true));
        let sock = m.path.to_str().unwrap();
        let (code, out, _) = run_ctl(&["--socket", sock, "metrics"], None);
        assert_eq!(code, 0);
        assert_eq!(out, crate::metrics::render(&sample(true)));

        for args in [
            &["reload"][..],
            &["stop"],
            &["scale", "api", "3"],
            &["restart", "0", "1"],
        ] {
            let mut full = vec!["--socket", sock];
            full.extend_from_slice(args);
            let (code, out, err) = run_ctl(&full, None);
            assert_eq!((code, out.as_str()), (0, "ok\n"), "{args:?}: {err}");
        }
        let (code, out, err) = run_ctl(&["--socket", sock, "scale", "api", "9"], None);
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(err, "cotyledon-ctl: the master refused: not that many\n");
        let seen = m.seen.lock().unwrap().clone();
        assert_eq!(
            &seen[3..],
            &[
                Request::Scale {
                    service: ServiceRef::Name("api".into()),
                    workers: 3
                },
                Request::Restart {
                    service: ServiceRef::Id(0),
                    worker: 1
                },
                Request::Scale {
                    service: ServiceRef::Name("api".into()),
                    workers: 9
                },
            ]
        );
    }

    #[test]
    fn reasons_agree_with_healthy() {
        let mut cases = vec![sample(true), sample(false)];
        let mut s = sample(true);
        s.state = ManagerState::Stopping;
        cases.push(s);
        let mut s = sample(true);
        s.limiter.waiting = true;
        cases.push(s);
        let mut s = sample(true);
        s.services[0].worker_list[0].stopping = true;
        cases.push(s);
        let mut s = sample(true);
        s.services[0].workers = 3; // worker 2 missing from the list
        cases.push(s);
        let mut s = sample(true);
        s.services[0].workers = -1;
        s.services[0].worker_list.clear();
        cases.push(s);
        for s in &cases {
            assert_eq!(unhealthy_reasons(s).is_empty(), s.healthy(), "{s:?}");
        }
        assert_eq!(
            unhealthy_reasons(&cases[4]),
            vec!["service \"api\" (id 0): worker 0 is stopping"]
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(-3.0), "0s");
        assert_eq!(human_duration(59.9), "59s");
        assert_eq!(human_duration(65.0), "1m05s");
        assert_eq!(human_duration(7380.0), "2h03m");
        assert_eq!(human_duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
    }
}
