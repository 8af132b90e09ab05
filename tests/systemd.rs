//! What systemd hears from a real master on a real AF_UNIX datagram
//! socket, on a path and in the abstract namespace: the start-up, reload
//! and stop sequences, the status line, the watchdog's cadence (and its
//! silence while the loop is stuck), and the variables workers never see.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// One datagram: when it came, its `KEY=value` lines.
struct Datagram {
    at: Instant,
    lines: Vec<String>,
}

impl Datagram {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.lines.iter().find_map(|l| l.strip_prefix(&prefix))
    }
}

/// A notify socket the test binds, and the datagrams it got, in order.
struct Systemd {
    rx: Receiver<Datagram>,
    got: Vec<Datagram>,
    /// What `NOTIFY_SOCKET` is set to.
    env: String,
    path: Option<PathBuf>,
}

impl Systemd {
    fn bind(abstract_ns: bool) -> Systemd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (sock, env, path) = if abstract_ns {
            let name = format!("cotyledon-systemd-test-{tag}");
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (
                UnixDatagram::bind_addr(&addr).unwrap(),
                format!("@{name}"),
                None,
            )
        } else {
            let path = std::env::temp_dir().join(format!("cotyledon-systemd-{tag}.sock"));
            let _ = std::fs::remove_file(&path);
            let sock = UnixDatagram::bind(&path).unwrap();
            (sock, path.to_str().unwrap().to_string(), Some(path))
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let lines = text.lines().map(str::to_string).collect();
                if tx
                    .send(Datagram {
                        at: Instant::now(),
                        lines,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        Systemd {
            rx,
            got: Vec::new(),
            env,
            path,
        }
    }

    /// Waits for the next datagram (after those already seen) with
    /// `line`; returns its index in `got`.
    fn expect(&mut self, line: &str) -> usize {
        let start = self.got.len();
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(i) = self.got[start..].iter().position(|d| d.has(line)) {
                return start + i;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(d) => self.got.push(d),
                Err(_) => panic!("no {line:?} within {SOON:?}; got {:?}", self.lines()),
            }
        }
    }

    /// Takes what arrived until `until` passes.
    fn collect_until(&mut self, until: Instant) {
        while let Ok(d) = self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.got.push(d);
        }
    }

    fn lines(&self) -> Vec<Vec<String>> {
        self.got.iter().map(|d| d.lines.clone()).collect()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn monotonic_us() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    Duration::from(t).as_micros()
}

fn start_up_reload_and_stop(abstract_ns: bool) {
    let mut sd = Systemd::bind(abstract_ns);
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_RELOAD_HOOK_MS", "0"),
        ("NOTIFY_SOCKET", &sd.env),
        ("WATCHDOG_USEC", "60000000"),
        ("LISTEN_FDS", "0"),
        ("LISTEN_PID", "1"),
        ("LISTEN_FDNAMES", "x"),
    ]);
    let master = app.pid();
    // Start-up: READY=1 with MAINPID and a status, in one datagram.
    let ready = sd.expect("READY=1");
    assert_eq!(ready, 0, "READY=1 comes first: {:?}", sd.lines());
    let first = &sd.got[0];
    assert_eq!(first.value("MAINPID"), Some(master.to_string().as_str()));
    assert!(first.has("WATCHDOG=1"), "{:?}", first.lines);
    assert_eq!(first.value("STATUS"), Some("svc: 0/2 workers"));
    // Workers see none of systemd's variables.
    for line in app.expect_n("event init", 2) {
        assert!(line.contains(" notify=- "), "{line}");
        assert!(line.contains(" sysvars=[] "), "{line}");
    }
    sd.expect("STATUS=svc: 2/2 workers");

    // SIGHUP: RELOADING=1 (with the monotonic clock), the hooks, READY=1.
    let before = monotonic_us();
    app.signal(Signal::SIGHUP);
    let reloading = sd.expect("RELOADING=1");
    let after = monotonic_us();
    let usec: u128 = sd.got[reloading]
        .value("MONOTONIC_USEC")
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} not between {before} and {after}"
    );
    assert!(sd.got[reloading].has("STATUS=reloading; svc: 2/2 workers"));
    let hook = sd.expect("STATUS=hook");
    let ready = sd.expect("READY=1");
    assert!(reloading < hook && hook < ready, "{:?}", sd.lines());
    assert!(app.expect("event hook reload").contains("told=true"));
    app.expect_n("event reload wid=", 2);

    // SIGTERM: STOPPING=1 first, with time for the whole stop.
    app.signal(Signal::SIGTERM);
    let stopping = sd.expect("STOPPING=1");
    let d = &sd.got[stopping];
    assert_eq!(
        d.value("EXTEND_TIMEOUT_USEC"),
        Some("66500000"),
        "60 s graceful + 1 s for the workers' own deadline + 0.5 s kill grace + 5 s: {:?}",
        d.lines
    );
    assert_eq!(d.value("STATUS"), Some("stopping: 2 workers left"));
    assert_eq!(app.wait(), 0);
    // READY=1 twice in all: at start and after the reload.
    sd.collect_until(Instant::now() + Duration::from_millis(100));
    let readies = sd.got.iter().filter(|d| d.has("READY=1")).count();
    assert_eq!(readies, 2, "{:?}", sd.lines());
}

#[test]
fn systemd_hears_start_up_reload_and_stop_on_a_path() {
    start_up_reload_and_stop(false);
}

#[test]
fn systemd_hears_start_up_reload_and_stop_on_an_abstract_socket() {
    start_up_reload_and_stop(true);
}

/// The gaps between consecutive `WATCHDOG=1` datagrams.
fn watchdog_gaps(sd: &Systemd) -> Vec<(Instant, Duration)> {
    let pets: Vec<Instant> = sd
        .got
        .iter()
        .filter(|d| d.has("WATCHDOG=1"))
        .map(|d| d.at)
        .collect();
    pets.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
}

#[test]
fn the_watchdog_is_fed_every_half_period_and_not_by_a_stuck_loop() {
    let mut sd = Systemd::bind(true);
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_RELOAD", "1"),
        ("APP_RELOAD_HOOK_MS", "700"),
        ("NOTIFY_SOCKET", &sd.env),
        ("WATCHDOG_USEC", "200000"),
    ]);
    sd.expect("READY=1");
    app.expect("event run wid=0");
    // A second of an idle master: fed every 100 ms, never 200 ms late.
    sd.collect_until(Instant::now() + Duration::from_secs(1));
    let gaps = watchdog_gaps(&sd);
    assert!(gaps.len() >= 5, "too few WATCHDOG=1: {gaps:?}");
    assert!(
        gaps.iter().all(|(_, g)| *g < Duration::from_millis(200)),
        "the watchdog starved while idle: {gaps:?}"
    );
    // A reload hook holds the loop 700 ms: no WATCHDOG=1 meanwhile.
    let seen = sd.got.len();
    app.signal(Signal::SIGHUP);
    let hook = sd.expect("STATUS=hook");
    let ready = sd.expect("READY=1");
    sd.collect_until(Instant::now() + Duration::from_millis(300));
    let hook_at = sd.got[hook].at;
    let ready_at = sd.got[ready].at;
    assert!(ready_at - hook_at >= Duration::from_millis(650));
    let fed_while_stuck = sd.got[seen..]
        .iter()
        .filter(|d| d.has("WATCHDOG=1") && d.at > hook_at && d.at < ready_at)
        .count();
    assert_eq!(fed_while_stuck, 0, "fed by a stuck loop: {:?}", sd.lines());
    let after: Vec<_> = sd.got[ready..]
        .iter()
        .filter(|d| d.has("WATCHDOG=1"))
        .collect();
    assert!(!after.is_empty(), "fed again once the loop is back");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn a_watchdog_for_another_pid_is_not_fed() {
    let mut sd = Systemd::bind(false);
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("NOTIFY_SOCKET", &sd.env),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ]);
    sd.expect("READY=1");
    app.expect("event run wid=0");
    sd.collect_until(Instant::now() + Duration::from_millis(400));
    app.signal(Signal::SIGTERM);
    sd.expect("STOPPING=1");
    assert_eq!(app.wait(), 0);
    let fed = sd.got.iter().filter(|d| d.has("WATCHDOG=1")).count();
    assert_eq!(fed, 0, "{:?}", sd.lines());
}

#[test]
fn sigint_tells_systemd_it_stops() {
    let mut sd = Systemd::bind(true);
    let mut app = App::start(&[("APP_WORKERS", "1"), ("NOTIFY_SOCKET", &sd.env)]);
    sd.expect("READY=1");
    app.expect("event run wid=0");
    app.signal(Signal::SIGINT);
    let stopping = sd.expect("STOPPING=1");
    assert_eq!(
        sd.got[stopping].value("EXTEND_TIMEOUT_USEC"),
        Some("5500000")
    );
    assert_eq!(app.wait(), 1);
}

#[test]
fn a_systemd_that_stops_reading_never_blocks_the_master() {
    // A socket nobody reads: its queue fills after a few datagrams (the
    // watchdog every 5 ms), and the master must go on all the same.
    let path = std::env::temp_dir().join(format!("cotyledon-deaf-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let deaf = UnixDatagram::bind(&path).unwrap();
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "10000"),
    ]);
    app.expect("event run wid=0");
    // Well past the queue's room (10 datagrams here).
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    app.signal(Signal::SIGHUP);
    app.expect("event run wid=0");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    drop(deaf);
    let _ = std::fs::remove_file(&path);
}
