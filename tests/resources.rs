//! What the processes hold: fds, sessions, titles; and many workers.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn stat_field(pid: i32, n: usize) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    // `rest` starts at field 3.
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn the_master_becomes_a_session_leader() {
    let mut app = App::start_in_our_group(&[("APP_WORKERS", "1")]);
    let pids = running_workers(&mut app, 1);
    let master = app.pid();
    assert_eq!(stat_field(master, 6), master, "session id");
    assert_eq!(stat_field(master, 5), master, "process group");
    assert_eq!(
        stat_field(pids[0], 5),
        master,
        "workers in the master's group"
    );
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn workers_inherit_only_their_own_fds() {
    let mut app = App::start(&[("APP_WORKERS", "6"), ("APP_REPORT_FDS", "1")]);
    let master_fds = app.expect("event master fds");
    running_workers(&mut app, 6);
    let mut sets: Vec<String> = Vec::new();
    for _ in 0..6 {
        let line = app.expect("event fds wid=");
        let fds = line
            .split_once(&format!("wid={} ", field(&line, "wid")))
            .unwrap()
            .1
            .to_string();
        sets.push(fds);
    }
    // Every worker holds the same fds, however many siblings it has.
    assert!(sets.iter().all(|s| *s == sets[0]), "{sets:?}");
    // Besides what the master itself inherited (stdio, and whatever the
    // test runner leaks, such as cargo's jobserver pipe), a worker holds
    // only close-on-exec fds: the self-pipe, the read end of the
    // parent-death pipe, and the /proc listing being read.
    let inherited: Vec<&str> = master_fds
        .split_once("fds ")
        .unwrap()
        .1
        .split(' ')
        .collect();
    let own: Vec<&str> = sets[0]
        .split(' ')
        .filter(|f| !inherited.contains(f))
        .collect();
    assert!(
        own.iter().all(|f| f.ends_with('c')),
        "{own:?} (master before run: {inherited:?})"
    );
    assert!(own.len() <= 2, "{own:?} beyond {inherited:?}");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn a_thousand_workers_start_and_stop() {
    const N: usize = 1000;
    let mut app = App::start(&[("APP_WORKERS", "1000"), ("APP_WAIT_INTERVAL_MS", "0")]);
    let pids = running_workers(&mut app, N);
    let master = app.pid();
    assert_eq!(group_members(master).len(), N + 1);
    app.signal(Signal::SIGTERM);
    app.expect_n("event terminate", N);
    app.expect("Shutdown finish");
    assert_eq!(app.wait(), 0);
    wait_gone(&pids, SOON);
    assert!(
        !app.seen.iter().any(|l| l.contains("Child ")),
        "no worker died before the shutdown"
    );
}

#[test]
fn sighups_during_a_reload_make_one_more_reload() {
    let dir = tempfile_dir("reload-again");
    let marker = dir.join("generation");
    let gate = dir.join("gate");
    std::fs::write(&marker, "0").unwrap();
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_RELOAD", "1"),
        ("APP_MARKER", marker.to_str().unwrap()),
        ("APP_RELOAD_GATE", gate.to_str().unwrap()),
    ]);
    let pids = running_workers(&mut app, 1);
    let worker = Pid::from_raw(pids[0]);
    kill(worker, Signal::SIGHUP).unwrap();
    app.expect("event reload wid=0");
    // reload() is held at the gate: these arrive while it runs.
    std::fs::write(&marker, "final").unwrap();
    for _ in 0..3 {
        kill(worker, Signal::SIGHUP).unwrap();
    }
    wait_delivered(pids[0], libc::SIGHUP);
    std::fs::write(&gate, "").unwrap();
    app.expect("event reload-done wid=0");
    let again = app.expect("event reload wid=0");
    assert!(again.contains("gen=final"), "{again}");
    app.expect("event reload-done wid=0");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    app.drain();
    // One more reload for the three SIGHUPs, not three: a pending one
    // would run before terminate.
    let reloads = app
        .seen
        .iter()
        .filter(|l| l.contains("event reload wid=0"))
        .count();
    assert_eq!(reloads, 2, "{:?}", app.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the target's temporary directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `sig` is no longer pending for process `pid` (its handler
/// took it), for 5 s at most.
fn wait_delivered(pid: i32, sig: i32) {
    let bit = 1u64 << (sig - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let pending = status
            .lines()
            .filter(|l| l.starts_with("ShdPnd:") || l.starts_with("SigPnd:"))
            .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
            .fold(0, |a, b| a | b);
        if pending & bit == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "SIGHUP still pending");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_reload_during_terminate_is_ignored() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_RELOAD", "1"),
        ("APP_TERM_HANG", "1"),
        ("APP_SERVICE_TIMEOUT", "1"),
    ]);
    let pids = running_workers(&mut app, 1);
    let worker = Pid::from_raw(pids[0]);
    kill(worker, Signal::SIGTERM).unwrap();
    app.expect("event terminate");
    kill(worker, Signal::SIGHUP).unwrap();
    app.expect_within(
        "Graceful shutdown timeout (1) exceeded",
        Duration::from_secs(5),
    );
    app.expect(&format!("Child {} exited with status 1", pids[0]));
    assert!(
        !app.seen
            .iter()
            .any(|l| l.contains(&format!("event reload wid=0 pid={}", pids[0]))),
        "reload ran during terminate: {:?}",
        app.seen
    );
}

fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn full_titles_show_in_the_command_line_when_asked() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_TITLE_FULL", "1")]);
    let pids = running_workers(&mut app, 2);
    for (wid, pid) in pids.iter().enumerate() {
        assert_eq!(cmdline(*pid), format!("test_app: svc worker({wid})"));
    }
    // The master's title is cut to the room its argv had.
    let master = cmdline(app.pid());
    assert!(
        master.starts_with("test_app: master process ["),
        "{master:?}"
    );
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}
