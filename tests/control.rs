//! The control socket from outside: the peer-credential check against a
//! real process of another uid, and the `cotyledon-ctl` binary.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cotyledon::control::protocol::{reply_ok, status_reply};
use cotyledon::control::{ControlServer, Limits, Peer, Request};
use cotyledon::status::{LimiterStatus, ManagerState, Status};

const NOBODY: u32 = 65534;
const CHILD_ENV: &str = "COTYLEDON_PEER_CHILD_SOCKET";

// The child's report, as its exit status.
const REFUSED: i32 = 40;
const CONNECT_FAILED: i32 = 41;
const SERVED: i32 = 42;
const OTHER: i32 = 43;
const NOTHING: i32 = 44;

/// Records `cotyledon.control` log lines, to check the refusal's warning.
struct Recorder;
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target() == cotyledon::logging::CONTROL {
            RECORDS
                .lock()
                .unwrap()
                .push(format!("{}:{}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// A directory anyone may enter (the other-uid client must reach the socket).
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "cty-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_root() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test must run as root: it starts a client as uid {NOBODY} to check the peer-credential check"
    );
}

/// Runs `server` until `child` exits (at most 10 s, then it is killed).
fn serve_until_exit(
    server: &mut ControlServer,
    child: &mut Child,
    exec: &mut dyn FnMut(Request, Peer) -> String,
) -> ExitStatus {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        server.poll_once(Duration::from_millis(20), exec).unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            // Let the server see the close.
            server.poll_once(Duration::from_millis(20), exec).unwrap();
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the client (pid {}) did not finish within 10 s", child.id());
        }
    }
}

fn canned_status() -> Status {
    Status {
        pid: 99,
        state: ManagerState::Running,
        started_at: 0.0,
        services: vec![],
        limiter: LimiterStatus {
            waiting: false,
            until: None,
        },
        init_pid: None,
        stopped_by: None,
    }
}

/// Not a test of its own: the body of the other-uid client, which
/// `peer_of_another_uid_is_refused` starts by running this test binary
/// again as nobody. Without the environment variable it does nothing.
#[test]
fn peer_child_helper() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let code = (|| {
        let mut s = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("child: connect: {e}");
                return CONNECT_FAILED;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The server may have closed already: a write error is fine.
        let _ = s.write_all(b"{\"cmd\":\"status\"}\n");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        eprintln!("child (uid {}): got {got:?}", nix::unistd::getuid());
        if got.is_empty() {
            NOTHING
        } else if got.contains("\"ok\":true") {
            SERVED
        } else if got == format!("{{\"ok\":false,\"protocol\":1,\"error\":\"permission denied: uid {NOBODY} may not control this master\"}}\n") {
            REFUSED
        } else {
            OTHER
        }
    })();
    std::process::exit(code);
}

#[test]
fn peer_of_another_uid_is_refused() {
    assert_root();
    let _ = log::set_logger(&Recorder);
    log::set_max_level(log::LevelFilter::Debug);
    let dir = TempDir::new("peer");
    let path = dir.0.join("ctl.sock");
    let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
    // Widen the mode, so that only the credential check can refuse.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let mut exec = move |_: Request, _: Peer| {
        calls2.fetch_add(1, Ordering::Relaxed);
        status_reply(&canned_status())
    };

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "peer_child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, &path)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let status = serve_until_exit(&mut server, &mut child, &mut exec);
    assert_eq!(
        status.code(),
        Some(REFUSED),
        "the uid {NOBODY} client was not refused as expected ({status}; see its stderr above)"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "a refused request reached the master"
    );
    assert_eq!(server.connections(), 0);
    let records = RECORDS.lock().unwrap().clone();
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("WARN:")
                && r.contains(&format!("from pid {child_pid} uid {NOBODY}"))),
        "{records:?}"
    );

    // The same socket still serves the master's own user (root here).
    let mut me = UnixStream::connect(&path).unwrap();
    me.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    me.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while !got.ends_with(b"\n") && Instant::now() < end {
        server
            .poll_once(Duration::from_millis(10), &mut exec)
            .unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = me.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        got.starts_with(b"{\"ok\":true"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

/// A ControlServer answered by a thread; stopped and joined on drop.
struct ThreadMaster {
    _dir: TempDir,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadMaster {
    fn start(mode: u32) -> ThreadMaster {
        let dir = TempDir::new("ctl");
        let path = dir.0.join("ctl.sock");
        let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut exec = |r: Request, _: Peer| match r {
                Request::Status => status_reply(&canned_status()),
                _ => reply_ok(Default::default()),
            };
            let end = Instant::now() + Duration::from_secs(30);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                server
                    .poll_once(Duration::from_millis(20), &mut exec)
                    .unwrap();
            }
        });
        ThreadMaster {
            _dir: dir,
            path,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ThreadMaster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the binary (10 s at most, then killed), returns (code, stdout, stderr).
fn ctl(args: &[&str], configure: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cotyledon-ctl"));
    cmd.args(args)
        .env_remove("COTYLEDON_CONTROL_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cotyledon-ctl {args:?} did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn ctl_binary_exit_codes() {
    let (code, out, _) = ctl(&["--help"], |_| {});
    assert_eq!(code, 0);
    assert!(out.starts_with("usage: cotyledon-ctl"));
    let (code, _, err) = ctl(&[], |_| {});
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&["--socket", "/nonexistent/ctl.sock", "status"], |_| {});
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no master at /nonexistent/ctl.sock"), "{err}");

    let m = ThreadMaster::start(0o600);
    let (code, out, err) = ctl(&["status"], |c| {
        c.env("COTYLEDON_CONTROL_SOCKET", &m.path);
    });
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("master pid 99, running, up "), "{out}");
    let (code, out, _) = ctl(&["--socket", m.path.to_str().unwrap(), "reload"], |_| {});
    assert_eq!((code, out.as_str()), (0, "ok\n"));
}

#[test]
fn ctl_binary_as_another_uid_is_refused() {
    assert_root();
    let m = ThreadMaster::start(0o666);
    let path: &Path = &m.path;
    let (code, out, err) = ctl(&["--socket", path.to_str().unwrap(), "status"], |c| {
        c.uid(NOBODY).gid(NOBODY);
    });
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        format!("cotyledon-ctl: the master refused: permission denied: uid {NOBODY} may not control this master\n")
    );
}
