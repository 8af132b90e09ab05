//! Workers started in a new program (`ServiceManager::set_exec`,
//! `ServiceManager::run_worker`): forked at the engine's one fork site,
//! then executed, they are the master's own children and run the same
//! worker protocol.

mod common;

use std::process::Command;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn exec_workers_are_the_masters_children_and_run_the_worker_protocol() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_EXEC", "1")]);
    let master = app.pid();
    let mut pids = vec![0; 2];
    for line in app.expect_n("event exec-worker ", 2) {
        assert_eq!(field(&line, "ppid"), master, "{line}");
        pids[field(&line, "wid") as usize] = field(&line, "pid");
    }
    // The new program's own new-worker hook, then run(), in that process.
    for (wid, pid) in pids.iter().enumerate() {
        app.expect(&format!("event hook new_worker wid={wid} pid={pid}"));
    }
    assert_eq!(running_workers(&mut app, 2), pids);
    for (wid, pid) in pids.iter().enumerate() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim_end(), format!("svc worker({wid})"));
    }
    // SIGHUP: the default reload restarts the worker, in a new program
    // again, with its id.
    kill(Pid::from_raw(pids[1]), Signal::SIGHUP).unwrap();
    app.expect(&format!("event terminate wid=1 pid={}", pids[1]));
    let again = app.expect("event exec-worker wid=1 ");
    assert_ne!(field(&again, "pid"), pids[1]);
    assert_eq!(field(&again, "ppid"), master);
    pids[1] = field(&app.expect("event run wid=1 "), "pid");

    app.signal(Signal::SIGTERM);
    for (wid, pid) in pids.iter().enumerate() {
        app.expect(&format!("event terminate wid={wid} pid={pid}"));
    }
    app.expect("event master done");
    assert_eq!(app.wait(), 0);
    wait_gone(&pids, SOON);
}

#[test]
fn exec_workers_end_with_a_killed_master() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_EXEC", "1")]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGKILL);
    for (wid, pid) in pids.iter().enumerate() {
        app.expect(&format!(
            "INFO:cotyledon._service_worker:Parent process has died unexpectedly, svc({wid}) [{pid}] exiting"
        ));
    }
    wait_gone(&pids, SOON);
}

#[test]
fn a_worker_that_cannot_be_executed_is_reported_and_respawned() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_EXEC", "1"),
        ("APP_EXEC_PROGRAM", "/nonexistent/program"),
    ]);
    app.expect(
        "ERROR:cotyledon._service_manager:Cannot start worker 0 of svc in a new program: No such file or directory",
    );
    app.expect("INFO:cotyledon._service_manager:Child ");
    app.expect("Cannot start worker 0 of svc in a new program");
    app.signal(Signal::SIGTERM);
    app.expect("event master done");
    assert_eq!(app.wait(), 0);
}

/// `run_worker` refuses an identity it cannot use, with the reason.
#[test]
fn run_worker_refuses_a_bad_identity() {
    let _serial = serial();
    for (identity, reason) in [
        ("garbage", "invalid worker handover: garbage"),
        (
            // Fds 97 and 98 are not open in the new program.
            "cotyledon-worker:1:1:0:1:97:98:1000",
            "invalid worker handover: cotyledon-worker:1:1:0:1:97:98:1000: an inherited fd: Bad file descriptor",
        ),
    ] {
        let out = Command::new(app_path())
            .env("APP_EXEC_WORKER", identity)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("run test_app");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains(&format!("event exec-error {reason}")),
            "{stderr}"
        );
    }
}
