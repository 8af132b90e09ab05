//! Start-up, respawn, reload, shutdown and fast exit, seen from outside on
//! real processes.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill worker");
}

#[test]
fn workers_start_with_ids_from_zero_and_stop_gracefully() {
    let mut app = App::start(&[("APP_WORKERS", "3")]);
    let pids = running_workers(&mut app, 3);
    let master = app.pid();
    for (wid, pid) in pids.iter().enumerate() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        // The program's name gives way to the worker's id.
        assert_eq!(comm.trim_end(), format!("svc worker({wid})"));
        let run_line = format!("DEBUG:cotyledon._service_worker:Run service svc({wid}) [{pid}]");
        // One line: time, the worker's pid, level, target, message.
        let line = app
            .seen
            .iter()
            .find(|l| l.ends_with(&run_line))
            .unwrap_or_else(|| panic!("{run_line} in {:?}", app.seen));
        assert_eq!(stamp_of(line, *pid), run_line, "{line}");
    }
    let comm = std::fs::read_to_string(format!("/proc/{master}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "test_app: maste");

    app.signal(Signal::SIGTERM);
    let line = app.expect(
        "INFO:cotyledon._service_manager:Caught SIGTERM signal, graceful exiting of master process",
    );
    assert!(stamp_of(&line, master).starts_with("INFO:"), "{line}");
    app.expect("DEBUG:cotyledon._service_manager:Killing services with signal SIGTERM");
    app.expect("DEBUG:cotyledon._service_manager:Waiting services to terminate");
    let mut terminated = app.expect_n("event terminate", 3);
    terminated.sort();
    for (wid, pid) in pids.iter().enumerate() {
        assert!(
            terminated
                .iter()
                .any(|l| l.contains(&format!("wid={wid} pid={pid}"))),
            "{terminated:?}"
        );
    }
    app.expect("DEBUG:cotyledon._service_manager:Shutdown finish");
    app.expect("event master done");
    assert_eq!(app.wait(), 0);
    wait_gone(&pids, SOON);
    let rest = app.drain();
    assert!(
        !rest.iter().any(|l| l.contains("Child ")),
        "no dead-worker lines during shutdown: {rest:?}"
    );
}

#[test]
fn a_killed_worker_is_respawned_with_the_same_id() {
    let mut app = App::start(&[("APP_WORKERS", "3"), ("APP_HOOKS", "1")]);
    let pids = running_workers(&mut app, 3);
    sigkill(pids[1]);
    // The hook fails on purpose: logged, and supervision goes on.
    app.expect("event hook dead_worker wid=1 code=-9");
    // One record on one line: the event, which hook, the service and the
    // worker id, and the error (its line break escaped).
    let line = app.expect("ERROR:cotyledon._utils:Exception raised during dead_worker hooks");
    assert!(
        line.ends_with(
            "ERROR:cotyledon._utils:Exception raised during dead_worker hooks: hook 1 of 1 \
             (service svc, worker 1) failed: hook failed on purpose\\nsecond line"
        ),
        "{line}"
    );
    app.expect(&format!(
        "INFO:cotyledon._service_manager:Child {} killed by signal SIGKILL",
        pids[1]
    ));
    let line = app.expect("event run ");
    assert_eq!(field(&line, "wid"), 1);
    let new_pid = field(&line, "pid");
    assert!(!pids.contains(&new_pid));
    assert!(!alive(pids[1]));
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn sighup_calls_reload_where_implemented() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_HOOKS", "1"),
    ]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGHUP);
    app.expect("event hook reload");
    expect_reloaded_in_place(&mut app, &pids);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let rest = app.drain();
    assert!(
        !rest.iter().any(|l| l.contains("event run ")),
        "no restart: {rest:?}"
    );
}

#[test]
fn sighup_restarts_workers_without_reload() {
    let mut app = App::start(&[("APP_WORKERS", "2")]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGHUP);
    // Default reload: the worker terminates gracefully and comes back.
    app.expect_n("Caught SIGTERM signal, graceful exiting of service svc(", 2);
    app.expect_n("event terminate", 2);
    app.expect_n("exited with status 0", 2);
    let again = running_workers(&mut app, 2);
    for (old, new) in pids.iter().zip(&again) {
        assert_ne!(old, new);
    }
    wait_gone(&pids, SOON);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn the_status_terminate_returns_is_the_workers_exit_status() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_TERM_CODE", "42"),
        ("APP_HOOKS", "1"),
    ]);
    let pids = running_workers(&mut app, 1);
    kill(Pid::from_raw(pids[0]), Signal::SIGTERM).unwrap();
    app.expect("event hook dead_worker wid=0 code=42");
    app.expect(&format!(
        "INFO:cotyledon._service_manager:Child {} exited with status 42",
        pids[0]
    ));
    running_workers(&mut app, 1);
    app.signal(Signal::SIGTERM);
    app.expect("event hook terminate 1");
    let line = app.expect("ERROR:cotyledon._utils:Exception raised during terminate hooks");
    assert!(
        line.ends_with(
            "ERROR:cotyledon._utils:Exception raised during terminate hooks: hook 2 of 3 \
             failed: panic: hook panicked on purpose"
        ),
        "{line}"
    );
    app.expect("Killing services with signal SIGTERM");
    assert_eq!(app.wait(), 0);
    let rest = app.drain();
    assert!(
        !app.seen
            .iter()
            .chain(&rest)
            .any(|l| l.contains("event hook terminate 3")),
        "hooks after a failing one are skipped"
    );
}

#[test]
fn a_failing_run_exits_with_its_status_and_a_panic_with_2() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_RUN_EXIT", "7"),
        ("APP_HOOKS", "1"),
    ]);
    app.expect("event hook dead_worker wid=0 code=7");
    drop(app);
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_RUN_PANIC", "1"),
        ("APP_HOOKS", "1"),
    ]);
    let line = app.expect("ERROR:cotyledon._service_worker:");
    assert!(
        line.ends_with(
            "ERROR:cotyledon._service_worker:Service svc worker 0: run() failed: \
             panic: run failed on purpose"
        ),
        "{line}"
    );
    app.expect("event hook dead_worker wid=0 code=2");
    // Respawned: it runs (and fails) again.
    app.expect("event run ");
}

#[test]
fn the_graceful_timeout_ends_a_hung_terminate() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_TERM_HANG", "1"),
        ("APP_SERVICE_TIMEOUT", "1"),
    ]);
    let pids = running_workers(&mut app, 1);
    kill(Pid::from_raw(pids[0]), Signal::SIGTERM).unwrap();
    app.expect("event terminate");
    app.expect(&format!(
        "INFO:cotyledon._service_worker:Graceful shutdown timeout (1) exceeded, exiting svc(0) [{}] now.",
        pids[0]
    ));
    app.expect(&format!("Child {} exited with status 1", pids[0]));
}

#[test]
fn the_masters_graceful_timeout_ends_in_a_fast_exit() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_TERM_HANG", "1"),
        ("APP_SERVICE_TIMEOUT", "0"),
        ("APP_MASTER_TIMEOUT", "1"),
    ]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGTERM);
    app.expect_n("event terminate", 2);
    app.expect("INFO:cotyledon._service_manager:Graceful shutdown timeout exceeded, instantaneous exiting of master process");
    assert_eq!(app.wait(), 1);
    wait_gone(&pids, SOON);
}

#[test]
fn with_equal_timeouts_the_workers_own_deadline_comes_first() {
    // terminate() hangs; the service's timeout is the manager's (1 s): the
    // worker's deadline ends it (exit 1), and the master's stop still ends
    // well (0), as Cotyledon's does. A timed-out stop would exit 1.
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_TERM_HANG", "1"),
        ("APP_MASTER_TIMEOUT", "1"),
    ]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGTERM);
    app.expect_n("event terminate", 2);
    app.expect_n("Graceful shutdown timeout (1) exceeded, exiting svc(", 2);
    assert_eq!(app.wait(), 0);
    assert!(
        !app.seen.iter().any(|l| l.contains("instantaneous exiting")),
        "the master's deadline came first"
    );
    wait_gone(&pids, SOON);
}

#[test]
fn sigint_exits_at_once_with_status_1() {
    let mut app = App::start(&[("APP_WORKERS", "3")]);
    let pids = running_workers(&mut app, 3);
    app.signal(Signal::SIGINT);
    app.expect("INFO:cotyledon._service_manager:Caught SIGINT signal, instantaneous exiting");
    assert_eq!(app.wait(), 1);
    wait_gone(&pids, SOON);
    let rest = app.drain();
    let all: Vec<&String> = app.seen.iter().chain(&rest).collect();
    for pid in &pids {
        assert!(
            all.iter().any(|l| l
                .contains("Caught SIGINT signal, instantaneous exiting of service svc(")
                && l.contains(&format!("[{pid}]"))),
            "worker {pid} saw SIGINT"
        );
    }
    assert!(
        !all.iter().any(|l| l.contains("event terminate")),
        "no graceful path on SIGINT"
    );
}

#[test]
fn workers_leave_when_the_master_is_killed() {
    let mut app = App::start(&[("APP_WORKERS", "3")]);
    let pids = running_workers(&mut app, 3);
    app.signal(Signal::SIGKILL);
    assert_eq!(app.wait(), -9);
    app.expect_n(
        "INFO:cotyledon._service_worker:Parent process has died unexpectedly, svc(",
        3,
    );
    app.expect_n("event terminate", 3);
    wait_gone(&pids, SOON);
    app.drain();
    for pid in &pids {
        let at = |needle: &str| {
            app.seen
                .iter()
                .position(|l| l.contains(needle) && l.contains(&format!("[{pid}]")))
                .unwrap_or_else(|| panic!("{needle} for {pid} in {:?}", app.seen))
        };
        let died = at("Parent process has died unexpectedly");
        let term = at("Caught SIGTERM signal, graceful exiting of service");
        assert!(died < term, "the parent-death line comes first for {pid}");
    }
}

#[test]
fn signals_end_the_process_again_after_run_returns() {
    let mut app = App::start(&[("APP_WORKERS", "1"), ("APP_LINGER", "1")]);
    running_workers(&mut app, 1);
    app.signal(Signal::SIGTERM);
    app.expect("event master done");
    app.signal(Signal::SIGTERM);
    assert_eq!(
        app.wait(),
        -15,
        "default action of SIGTERM once run() is over"
    );
}

#[test]
fn sighup_during_the_shutdown_is_ignored() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_TERM_HANG", "1"),
        ("APP_SERVICE_TIMEOUT", "1"),
    ]);
    running_workers(&mut app, 2);
    app.signal(Signal::SIGTERM);
    app.expect_n("event terminate", 2);
    let master = app.pid();
    let cpu = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<u64> = stat
            .rsplit_once(") ")
            .unwrap()
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    let before = cpu(master);
    app.signal(Signal::SIGHUP);
    // The workers end by their graceful timeout, 1 s after SIGTERM; the
    // master waits for them without spinning on the pending SIGHUP.
    app.expect_n("Graceful shutdown timeout (1) exceeded", 2);
    let spent = cpu(master) - before;
    assert!(spent < 30, "master burnt {spent} clock ticks while waiting");
    app.expect("Shutdown finish");
    assert_eq!(app.wait(), 0);
    assert!(
        !app.seen.iter().any(|l| l.contains("event reload")),
        "no reload while stopping"
    );
}

#[test]
fn a_master_running_on_another_thread_exits_cleanly() {
    // The end of the shutdown signals the master's own process group; that
    // SIGTERM must never end the process after run() returned, whichever
    // thread it is delivered to.
    for _ in 0..10 {
        let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_RUN_IN_THREAD", "1")]);
        running_workers(&mut app, 2);
        app.signal(Signal::SIGTERM);
        app.expect("event master done");
        assert_eq!(app.wait(), 0);
    }
}

/// Checks that a record of `logging::init_stderr` starts with the UTC time
/// to the millisecond and `[pid]`; returns the rest (`LEVEL:target:message`).
fn stamp_of(line: &str, pid: i32) -> &str {
    let (time, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no time: {line}"));
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999Z", "{line}");
    rest.strip_prefix(&format!("[{pid}] "))
        .unwrap_or_else(|| panic!("no [{pid}]: {line}"))
}

/// The default reload's exit is an ordinary exit 0 in `on_dead_worker`;
/// the status the hook reads marks it as a restart, unlike a crash.
#[test]
fn a_dead_worker_hook_tells_a_reload_restart_from_a_death() {
    let mut app = App::start(&[("APP_WORKERS", "1"), ("APP_DEAD_STATUS", "1")]);
    let pids = running_workers(&mut app, 1);
    app.signal(Signal::SIGHUP);
    app.expect("event dead wid=0 code=0 restarted=true");
    let pids2 = running_workers(&mut app, 1);
    assert_ne!(pids, pids2);
    sigkill(pids2[0]);
    app.expect("event dead wid=0 code=-9 restarted=false");
    running_workers(&mut app, 1);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}
