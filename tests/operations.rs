//! What an operator sees of a running master: its status (from a hook and
//! over the control socket), the control commands, `cotyledon-ctl`, the
//! metrics, and who may connect. Real masters, real sockets.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_cotyledon-ctl");

/// A fresh directory for this test's socket and files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cotyledon-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(CTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run cotyledon-ctl")
}

fn ctl_ok(socket: &Path, args: &[&str]) -> String {
    let out = ctl(socket, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cotyledon-ctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status(socket: &Path) -> Value {
    serde_json::from_str(&ctl_ok(socket, &["status", "--json"])).expect("status JSON")
}

/// `(worker id, pid)` of the running workers of the first service.
fn worker_pids(status: &Value) -> Vec<(u64, i64)> {
    status["services"][0]["worker_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| Some((w["worker_id"].as_u64()?, w["pid"].as_i64()?)))
        .collect()
}

/// Polls `cond` on the status until it holds, or panics at the deadline.
fn wait_status(socket: &Path, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(socket);
        if cond(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "never {what}: {st:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_read_from_a_hook_shows_workers_restarts_and_last_exits() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_STATUS_ON_HUP", "1")]);
    let pids = running_workers(&mut app, 2);
    sigkill(pids[1]);
    app.expect(&format!("Child {} killed by signal SIGKILL", pids[1]));
    let respawned = field(&app.expect("event run wid=1 "), "pid");
    app.signal(Signal::SIGHUP);
    let line = app.expect("event status ");
    let json = line.split_once("event status ").unwrap().1;
    let st: Value = serde_json::from_str(json).expect("status JSON");
    // Read from a reload hook: the master is reloading.
    assert_eq!(st["state"], "reloading", "{st:#}");
    assert_eq!(st["pid"].as_i64(), Some(app.pid() as i64));
    let svc = &st["services"][0];
    assert_eq!(svc["name"], "svc");
    assert_eq!(svc["workers"], 2);
    assert_eq!(svc["running"], 2);
    assert_eq!(
        worker_pids(&st),
        vec![(0, pids[0] as i64), (1, respawned as i64)]
    );
    let w1 = &svc["worker_list"][1];
    assert_eq!(w1["restarts"], 1);
    assert_eq!(w1["last_exit"]["kind"], "signal");
    assert_eq!(w1["last_exit"]["name"], "SIGKILL");
    assert_eq!(svc["worker_list"][0]["restarts"], 0);
    assert!(svc["worker_list"][0]["last_exit"].is_null());
    assert_eq!(svc["counters"]["starts"], 3);
    assert_eq!(svc["counters"]["exits_signal"], 1);
    assert_eq!(svc["counters"]["restarts"], 1);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill worker");
}

#[test]
fn the_control_socket_and_ctl_drive_a_running_master() {
    let dir = scratch("drive");
    let sock = dir.join("ctl.sock");
    let metrics = dir.join("cotyledon.prom");
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
        ("COTYLEDON_METRICS_FILE", metrics.to_str().unwrap()),
        ("APP_METRICS_MS", "100"),
    ]);
    let pids = running_workers(&mut app, 2);
    // Only the master's user may connect, and the file says so too.
    let meta = std::fs::metadata(&sock).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let st = wait_status(&sock, "both workers listed", |st| {
        worker_pids(st).len() == 2
    });
    assert_eq!(
        worker_pids(&st),
        vec![(0, pids[0] as i64), (1, pids[1] as i64)]
    );
    assert_eq!(st["state"], "running");
    assert_eq!(ctl_ok(&sock, &["status", "--check"]).trim(), "healthy");
    let table = ctl_ok(&sock, &["status"]);
    assert!(
        table.contains("\"svc\"") && table.contains(&pids[1].to_string()),
        "{table}"
    );

    // scale: a third worker starts with id 2.
    ctl_ok(&sock, &["scale", "svc", "3"]);
    app.expect("Run service svc(2) [");
    // Every command that changes something is logged with its peer.
    let me = std::process::id();
    assert!(
        app.seen
            .iter()
            .any(|l| l.contains("] INFO:cotyledon.control:Scale of service")
                && l.contains(" to 3 workers requested on the control socket by pid ")
                && l.ends_with(" (uid 0)")),
        "{:?} (test pid {me})",
        app.seen
    );

    // restart: worker 0 is stopped gracefully and comes back, same id.
    ctl_ok(&sock, &["restart", "svc", "0"]);
    app.expect(&format!("graceful exiting of service svc(0) [{}]", pids[0]));
    let new0 = field(&app.expect("event run wid=0 "), "pid");
    assert_ne!(new0, pids[0]);
    let st = wait_status(&sock, "worker 0 back", |st| {
        worker_pids(st).contains(&(0, new0 as i64))
    });
    assert_eq!(st["services"][0]["worker_list"][0]["restarts"], 1);

    // reload: every worker's reload() runs.
    ctl_ok(&sock, &["reload"]);
    app.expect_n("event reload", 3);

    // metrics: the Prometheus text, also in the file.
    let text = ctl_ok(&sock, &["metrics"]);
    assert!(
        text.contains("cotyledon_worker_starts_total{service=\"svc\",service_id=\"")
            && text.contains("\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("cotyledon_workers_running{service=\"svc\""),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let file = std::fs::read_to_string(&metrics).unwrap_or_default();
        if file.contains("cotyledon_reloads_total{service=\"svc\",service_id=\"")
            && file.contains("\"} 1\n")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics file never caught up:\n{file}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // stop: a graceful stop, the socket file removed.
    assert_eq!(ctl_ok(&sock, &["stop"]).trim(), "stopping");
    app.expect("Shutdown requested, graceful exiting of master process");
    assert_eq!(app.wait(), 0);
    assert!(!sock.exists(), "socket file left behind");
    assert_eq!(ctl(&sock, &["status"]).status.code(), Some(3), "no master");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends raw lines on the socket, returns the reply lines.
fn raw(sock: &Path, lines: &[&[u8]]) -> Vec<Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut replies = Vec::new();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for line in lines {
        s.write_all(line).unwrap();
        s.write_all(b"\n").unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).expect("reply");
        replies.push(serde_json::from_str(&reply).expect("reply JSON"));
    }
    replies
}

#[test]
fn bad_requests_get_an_error_and_change_nothing() {
    let dir = scratch("bad");
    let sock = dir.join("ctl.sock");
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let pids = running_workers(&mut app, 2);
    let huge = format!("{{\"cmd\":\"status\",\"pad\":\"{}\"}}", "x".repeat(70_000));
    let replies = raw(
        &sock,
        &[
            b"{not json",
            b"{\"cmd\":\"explode\"}",
            b"{\"cmd\":\"scale\",\"service\":\"nope\",\"workers\":3}",
            b"{\"cmd\":\"scale\",\"service\":\"svc\",\"workers\":-1}",
            b"{\"cmd\":\"scale\",\"service\":\"svc\",\"workers\":100000000}",
            b"{\"cmd\":\"restart\",\"service\":\"svc\",\"worker\":7}",
            b"{\"cmd\":\"status\"}",
        ],
    );
    for r in &replies[..6] {
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["protocol"], 1, "{r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }
    assert_eq!(replies[6]["ok"], true);
    assert_eq!(
        worker_pids(&replies[6]["status"]),
        vec![(0, pids[0] as i64), (1, pids[1] as i64)]
    );
    // An oversized line: an error, then the connection is closed.
    let big = raw(&sock, &[huge.as_bytes()]);
    assert_eq!(big[0]["ok"], false);
    // Many connections at once: the extra ones are refused, supervision
    // goes on.
    let held: Vec<_> = (0..40)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&sock).ok())
        .collect();
    assert!(held.len() >= 32, "{} connections", held.len());
    drop(held);
    sigkill(pids[1]);
    app.expect(&format!("Child {} killed by signal SIGKILL", pids[1]));
    app.expect("event run wid=1 ");
    assert_eq!(ctl_ok(&sock, &["status", "--check"]).trim(), "healthy");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `cotyledon-ctl status` as user nobody.
fn ctl_as_nobody(sock: &Path) -> Output {
    Command::new(CTL)
        .arg("--socket")
        .arg(sock)
        .arg("status")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run cotyledon-ctl as nobody")
}

#[test]
fn another_user_is_refused_by_the_mode_and_by_the_peer_check_alone() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (setuid to nobody)"
    );
    let dir = scratch("uid");
    // nobody must reach the directory to try the socket at all.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("ctl.sock");
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    running_workers(&mut app, 1);
    // 1. The socket's 0600 mode refuses nobody before any credential.
    let out = ctl_as_nobody(&sock);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert!(
        !app.seen.iter().any(|l| l.contains("uid 65534")),
        "not the peer check"
    );
    // 2. With the mode opened, the peer-credential check alone refuses it,
    // and says so in the master's log.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ctl_as_nobody(&sock);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied: uid 65534"),
        "{out:?}"
    );
    app.expect("uid 65534");
    // The master's own user still gets in.
    assert_eq!(ctl_ok(&sock, &["status", "--check"]).trim(), "healthy");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_an_error() {
    let dir = scratch("stale");
    let sock = dir.join("ctl.sock");
    // A killed master's leftover: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut first = App::start(&[
        ("APP_WORKERS", "1"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    running_workers(&mut first, 1);
    assert_eq!(ctl_ok(&sock, &["status", "--check"]).trim(), "healthy");
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait(), 0);
    // One app at a time (App holds the tests' serial lock).
    drop(first);

    // A live one: a second master on the same path fails at start-up.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut second = App::start(&[
        ("APP_WORKERS", "1"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    let line = second.expect("event master error");
    assert!(line.contains(sock.to_str().unwrap()), "{line}");
    assert_eq!(second.wait(), 3);
    drop(second);
    assert!(sock.exists(), "the live socket is left alone");
    drop(listener);

    // Not a socket: an error too, and the file is untouched.
    std::fs::remove_file(&sock).unwrap();
    std::fs::write(&sock, "data").unwrap();
    let mut third = App::start(&[
        ("APP_WORKERS", "1"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    third.expect("event master error");
    assert_eq!(third.wait(), 3);
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "data");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_socket_file_goes_with_a_master_that_exits_on_sigint() {
    let dir = scratch("sigint");
    let sock = dir.join("ctl.sock");
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("COTYLEDON_CONTROL_SOCKET", sock.to_str().unwrap()),
    ]);
    running_workers(&mut app, 2);
    assert!(sock.exists());
    app.signal(Signal::SIGINT);
    assert_eq!(app.wait(), 1);
    assert!(!sock.exists(), "socket file left behind by a fast exit");
    let _ = std::fs::remove_dir_all(&dir);
}
