//! Restart policies seen from outside: a real master (tests/support/app.rs)
//! whose service has a policy, its workers exiting on purpose.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The JSON status the app prints on SIGHUP (`APP_STATUS_ON_HUP`).
fn status_on_hup(app: &mut App) -> serde_json::Value {
    app.signal(Signal::SIGHUP);
    let line = app.expect("event status ");
    let json = &line[line.find("event status ").unwrap() + "event status ".len()..];
    serde_json::from_str(json).expect("status JSON")
}

#[test]
fn on_failure_finishes_clean_exits_and_respawns_failures() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_EXIT_CODES", "0,3"),
        ("APP_RESTART", "on-failure"),
        ("APP_RELOAD", "1"),
        ("APP_STATUS_ON_HUP", "1"),
    ]);
    app.expect("Worker 0 of service svc finished (restart policy on-failure)");
    // Worker 1 fails: it comes back, again and again.
    app.expect_n("event init wid=1 ", 2);
    let status = status_on_hup(&mut app);
    let svc = &status["services"][0];
    assert_eq!(svc["policy"]["restart"], "on-failure");
    let w0 = &svc["worker_list"][0];
    assert_eq!(w0["finished"], true, "{w0}");
    assert_eq!(w0["pid"], serde_json::Value::Null);
    assert_eq!(w0["last_exit"]["code"], 0);
    assert_eq!(svc["worker_list"][1]["finished"], false);
    assert!(svc["counters"]["failures"].as_u64().unwrap() >= 1, "{svc}");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    app.drain();
    let starts = app
        .seen
        .iter()
        .filter(|l| l.contains("event init wid=0 "))
        .count();
    assert_eq!(starts, 1, "worker 0 started once");
}

#[test]
fn never_with_stop_on_exit_gives_back_the_last_failure() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_EXIT_CODES", "7,0"),
        ("APP_RESTART", "never"),
        ("APP_STOP_ON_EXIT", "1"),
    ]);
    app.expect("Worker 0 of service svc finished (restart policy never)");
    app.expect("Worker 1 of service svc finished (restart policy never)");
    app.expect(
        "ERROR:cotyledon._service_manager:Service svc has no worker left (stop on exit): \
         stopping the manager with exit status 7",
    );
    // The stop says what it is, not a SIGTERM nobody sent.
    app.expect("Restart policy stop, graceful exiting of master process");
    app.expect("event master stopped status=7 reason=Service svc has no worker left");
    assert_eq!(app.wait(), 7, "run() gave back the failure's status");
    assert!(!app
        .seen
        .iter()
        .any(|l| l.contains("Caught SIGTERM signal, graceful exiting of master")));
    assert_eq!(
        app.seen
            .iter()
            .filter(|l| l.contains("event init "))
            .count(),
        2,
        "no worker was respawned"
    );
}

#[test]
fn give_up_stops_the_manager_with_its_documented_status() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_EXIT_CODES", "5"),
        ("APP_BACKOFF_MS", "20,20"),
        ("APP_GIVE_UP", "3,60000"),
    ]);
    app.expect(
        "ERROR:cotyledon._service_manager:Service svc gave up: 3 failures within 60s: \
         stopping the manager with exit status 125",
    );
    app.expect("event master stopped status=125");
    assert_eq!(app.wait(), cotyledon::GIVE_UP_STATUS);
    assert_eq!(
        app.seen
            .iter()
            .filter(|l| l.contains("event init wid=0 "))
            .count(),
        3
    );
}

#[test]
fn backoff_waits_grow_and_never_hold_another_service() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_EXIT_CODES", "1"),
        ("APP_BACKOFF_MS", "200,1600"),
        ("APP_OTHER", "1"),
    ]);
    let other = field(&app.expect("event other-init "), "pid");
    for wait in ["0.200", "0.400", "0.800", "1.600"] {
        app.expect(&format!(
            "Worker 0 of service svc restarting in {wait}s (backoff)"
        ));
    }
    // svc waits 1.6 s now; the other service's worker dies: it is back
    // before svc's next start (the limiter's history holds none of svc's
    // forks, and svc's wait holds nothing else).
    kill(Pid::from_raw(other), Signal::SIGKILL).unwrap();
    let killed = app.expect(&format!("Child {other} killed by signal SIGKILL"));
    let back = app.expect("event other-init ");
    app.expect("Worker 0 of service svc restarting in 1.600s (backoff)");
    // In the order the lines were written: the other service's new worker
    // started before svc's next one.
    let at = |line: &str| app.seen.iter().position(|l| l == line).unwrap();
    let svc_next = app
        .seen
        .iter()
        .skip(at(&killed))
        .position(|l| l.contains("event init wid=0 "))
        .map(|i| i + at(&killed))
        .expect("svc started again");
    assert!(at(&back) < svc_next, "{:#?}", &app.seen[at(&killed)..]);
    assert!(
        !app.seen.iter().any(|l| l.contains("Forking too fast")),
        "svc's crash loop is not the limiter's"
    );
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn announced_restarts_and_scale_downs_do_not_count_under_never() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RESTART", "never"),
        ("APP_STOP_ON_EXIT", "1"),
        ("APP_RECONFIGURE", "1"),
    ]);
    let pids = running_workers(&mut app, 2);
    // SIGHUP: the hook scales to 1 (worker 1 gets SIGTERM from the
    // master), and worker 0's default reload() restarts it (announced).
    app.signal(Signal::SIGHUP);
    app.expect("event reconfigured 1");
    app.expect_n("exited with status 0", 2);
    // Its new process (the first init line of worker 0 is its old one's).
    app.expect("event init wid=0 ");
    let init = app.expect("event init wid=0 ");
    assert_ne!(field(&init, "pid"), pids[0], "worker 0 was respawned");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0, "no policy stop");
    app.drain();
    let all = &app.seen;
    assert!(
        !all.iter().any(|l| l.contains("finished (restart policy")),
        "{all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|l| l.contains("event init wid=1 "))
            .count(),
        1,
        "worker 1, scaled down, is not respawned"
    );
}
