//! Reconfigure, the fork-rate limiter, start-up races, systemd
//! notification and application threads that reap children.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn reconfigure_up_then_down_from_a_reload_hook() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_RECONFIGURE", "4,1"),
    ]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGHUP);
    app.expect("event reconfigured 4");
    let mut new_ids: Vec<i32> = app
        .expect_n("event run ", 2)
        .iter()
        .map(|l| field(l, "wid"))
        .collect();
    new_ids.sort();
    assert_eq!(new_ids, vec![2, 3]);
    app.signal(Signal::SIGHUP);
    app.expect("event reconfigured 1");
    let mut stopped: Vec<i32> = app
        .expect_n("event terminate", 3)
        .iter()
        .map(|l| field(l, "wid"))
        .collect();
    stopped.sort();
    assert_eq!(stopped, vec![1, 2, 3], "ids at or above the new count stop");
    app.expect_n("exited with status 0", 3);
    assert!(alive(pids[0]), "worker 0 stays");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let rest = app.drain();
    assert!(
        !rest.iter().any(|l| l.contains("event run ")),
        "stopped ids are not respawned: {rest:?}"
    );
}

#[test]
fn the_fork_limiter_waits_without_blocking_signals() {
    // A worker whose run() fails at once: a crash loop.
    let mut app = App::start(&[("APP_WORKERS", "1"), ("APP_RUN_EXIT", "3")]);
    app.expect("INFO:cotyledon._service_manager:Forking too fast, sleeping");
    // While it waits its 5 s, SIGTERM is handled at once.
    let t = Instant::now();
    app.signal(Signal::SIGTERM);
    app.expect("Caught SIGTERM signal, graceful exiting of master process");
    assert_eq!(app.wait(), 0);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "SIGTERM waited for the limiter: {:?}",
        t.elapsed()
    );
    let forks = app.seen.iter().filter(|l| l.contains("event run ")).count();
    assert!(forks <= 3, "{forks} forks before the limiter kicked in");
}

#[test]
fn sigterm_during_start_up_leaves_no_worker_behind() {
    let mut app = App::start(&[("APP_WORKERS", "40"), ("APP_WAIT_INTERVAL_MS", "5")]);
    let master = app.pid();
    app.expect("event run wid=0");
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    app.drain();
    let deadline = Instant::now() + SOON;
    loop {
        reap_orphans();
        let left = group_members(master);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = app.seen.iter().filter(|l| l.contains("event run ")).count();
    assert!(started < 40, "stopped mid start-up ({started} started)");
}

/// Two of three workers end while the master is stopped, so that one wake
/// sees both deaths, with `thief` (an env flag of the test app) reaping
/// children too: both ids must come back at once, not at some later SIGCHLD.
/// Returns the pids of the two whose status the application took (its
/// `event <who> took pid=...` lines), each checked against what the master
/// logged for it.
fn two_deaths_in_one_wake_with(thief: &[(&str, &str)], who: &str) -> Vec<i32> {
    let mut env = vec![("APP_WORKERS", "3"), ("APP_RELOAD", "1")];
    env.extend_from_slice(thief);
    let mut app = App::start(&env);
    let pids = running_workers(&mut app, 3);
    // A reload clears the fork-rate limiter: both respawns come at once.
    app.signal(Signal::SIGHUP);
    app.expect_n("event reload ", 3);
    if who == "thief" {
        // The thread is waiting in waitpid(-1) before the deaths.
        wait_thread_in_waitpid(app.pid(), SOON);
    }
    app.signal(Signal::SIGSTOP);
    wait_state(app.pid(), 'T', SOON);
    for pid in &pids[..2] {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    }
    // Both statuses are there to take when the master wakes.
    wait_reapable(&pids[..2], SOON);
    app.signal(Signal::SIGCONT);
    let mut ids: Vec<i32> = app
        .expect_n("event run ", 2)
        .iter()
        .map(|l| field(l, "wid"))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1]);
    let deaths: Vec<String> = pids[..2]
        .iter()
        .map(|pid| app.expect(&format!("Child {pid} ")))
        .collect();
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    app.drain();
    // The application also takes statuses of workers ending at the
    // shutdown: only the two killed ones count.
    let taken: Vec<i32> = taken_by(&app, who)
        .into_iter()
        .filter(|p| pids[..2].contains(p))
        .collect();
    for (pid, death) in pids[..2].iter().zip(&deaths) {
        // A status the master reaped itself says SIGKILL; one the
        // application took is lost to it (LOST_STATUS).
        let lost = death.ends_with(&format!("Child {pid} exited with status 255"));
        let killed = death.ends_with(&format!("Child {pid} killed by signal SIGKILL"));
        assert!(lost || killed, "{death}");
        assert_eq!(
            taken.contains(pid),
            lost,
            "worker {pid}: the master says {death:?}, the application took {taken:?}"
        );
    }
    taken
}

/// A dead-worker hook, run for the first death, takes the second's status:
/// the other worker is already a zombie when the hook runs, so it happens
/// every time.
#[test]
fn a_status_taken_by_a_hook_in_the_same_wake_is_still_respawned() {
    let taken = two_deaths_in_one_wake_with(&[("APP_HOOK_THIEF", "1")], "hook thief");
    assert_eq!(
        taken.len(),
        1,
        "the hook took one of the two statuses: {taken:?}"
    );
}

/// Rounds of [`two_deaths_in_one_wake_with`] an application thread are
/// given to take one of the two statuses while the loop reaps the other.
const THREAD_THEFT_ROUNDS: usize = 100;

/// A thread that takes one status, then idles (it stays alive, so the
/// process keeps two threads).
const THREAD_THIEF: [(&str, &str); 2] = [("APP_THIEF", "1"), ("APP_THIEF_ONCE", "1")];

/// An application thread, blocked in `waitpid(-1)` before the deaths,
/// competes with the loop for both statuses, so each round may go either
/// way: the thread takes none, one or both. The case under test is one
/// taken by the thread while the loop reaps the other in the same wake.
/// Rounds go on until it happened (each round a new master, that has seen
/// no theft yet), and every round must bring both ids back.
#[test]
fn a_status_taken_by_a_thread_in_the_same_wake_is_still_respawned() {
    // Rounds by how many of the two statuses the thread took.
    let mut outcomes = [0usize; 3];
    let mut rounds = 0;
    while outcomes[1] == 0 {
        assert!(
            rounds < THREAD_THEFT_ROUNDS,
            "the thread never took exactly one of the two statuses in {rounds} rounds \
             (rounds by statuses it took, 0/1/2: {outcomes:?})"
        );
        let taken = two_deaths_in_one_wake_with(&THREAD_THIEF, "thief");
        outcomes[taken.len()] += 1;
        rounds += 1;
    }
    eprintln!("rounds by statuses the thread took, 0/1/2: {outcomes:?}");
}

/// An application thread, blocked in `waitpid(-1)` before the kill, is
/// woken by the death itself and races the loop for the status. Rounds
/// (each a new master) go on until the thread took it; in every round
/// worker 0 comes back.
#[test]
fn a_worker_reaped_by_an_application_thread_is_still_respawned() {
    let mut rounds = 0;
    loop {
        assert!(
            rounds < THREAD_THEFT_ROUNDS,
            "the thread never took the status in {rounds} rounds"
        );
        rounds += 1;
        let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_THIEF", "1"), ("APP_HOOKS", "1")]);
        let pids = running_workers(&mut app, 2);
        wait_thread_in_waitpid(app.pid(), SOON);
        kill(Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();
        let line = app.expect("event run ");
        assert_eq!(field(&line, "wid"), 0);
        assert!(!pids.contains(&field(&line, "pid")));
        let death = app.expect(&format!("Child {} ", pids[0]));
        app.signal(Signal::SIGTERM);
        assert_eq!(app.wait(), 0);
        app.drain();
        let taken = taken_by(&app, "thief").contains(&pids[0]);
        assert_eq!(
            taken,
            death.ends_with(&format!("Child {} exited with status 255", pids[0])),
            "the master says {death:?}; taken by the thread: {taken}"
        );
        if taken {
            eprintln!("the thread took the status in round {rounds}");
            return;
        }
    }
}

#[test]
fn shutdown_from_a_hook() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_SHUTDOWN_ON_DEAD", "1")]);
    let pids = running_workers(&mut app, 2);
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
    app.expect("INFO:cotyledon._service_manager:Manager shutdown requested");
    // Says what happened: no signal was caught.
    app.expect(
        "INFO:cotyledon._service_manager:Shutdown requested, graceful exiting of master process",
    );
    app.expect("Shutdown finish");
    app.drain();
    assert!(
        !app.seen()
            .iter()
            .any(|l| l.contains("Caught SIGTERM signal, graceful exiting of master")),
        "a shutdown() call is not a SIGTERM"
    );
    assert_eq!(app.wait(), 0);
    wait_gone(&pids, SOON);
}

#[test]
fn the_applications_own_children_are_left_to_it() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_FOREIGN_CHILD", "1")]);
    let pids = running_workers(&mut app, 2);
    // The foreign child has exited by now and waits, a zombie, for the app.
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
    app.expect("event foreign child status=0");
    app.expect(&format!("Child {} killed by signal SIGKILL", pids[1]));
    let line = app.expect("event run ");
    assert_eq!(field(&line, "wid"), 1);
    // And again, now that no foreign zombie is in the way.
    let new = field(&line, "pid");
    kill(Pid::from_raw(new), Signal::SIGKILL).unwrap();
    assert_eq!(field(&app.expect("event run "), "wid"), 1);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn hooks_added_while_running_run_from_the_next_event_on() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_LATE_HOOKS", "1"),
    ]);
    let pids = running_workers(&mut app, 2);
    app.signal(Signal::SIGHUP);
    app.expect("event late hooks added");
    app.expect_n("event reload ", 2);
    // The worker that hook added is the first one forked after it.
    app.expect("event late new_worker wid=2");
    app.expect("event run wid=2");
    app.signal(Signal::SIGHUP);
    app.expect("event late reload");
    app.expect_n("event reload ", 3);
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
    app.expect("event late dead_worker wid=1 code=-9");
    let line = app.expect("event late new_worker wid=1");
    let new_pid = field(&line, "pid");
    assert!(
        new_pid != pids[1] && new_pid != app.pid(),
        "runs in the new worker: {line}"
    );
    app.expect("event run wid=1");
    app.signal(Signal::SIGTERM);
    app.expect("event late terminate");
    assert_eq!(app.wait(), 0);
    app.drain();
    let seen = app.seen.join("\n");
    assert_eq!(
        seen.matches("event late reload").count(),
        1,
        "not on the SIGHUP that added it"
    );
    assert_eq!(
        seen.matches("event late new_worker").count(),
        2,
        "only workers forked after"
    );
}

/// Every call that acts on the manager, made in a worker, is an
/// `Error::NotInMaster` naming both processes; none of them logs, changes
/// or stops anything in the master.
#[test]
fn manager_calls_from_a_worker_are_errors() {
    let mut app = App::start(&[("APP_WORKERS", "1"), ("APP_MANAGER_CALLS", "1")]);
    let master = app.pid();
    let calls = [
        "reconfigure",
        "scale",
        "reload",
        "restart",
        "reset_limiter",
        "set_graceful_shutdown_timeout",
        "shutdown",
        "on_terminate",
        "on_reload",
        "on_reload_check",
        "on_new_worker",
        "on_dead_worker",
    ];
    for call in calls {
        let line = app.expect(&format!("event worker-call {call} "));
        let worker = field(&line, "pid");
        assert_ne!(worker, master);
        assert!(
            line.ends_with(&format!(
                "error NotInMaster {{ pid: {worker}, master: {master} }}: manager calls work \
                 only in the master process (pid {master}), not in process {worker} (a worker \
                 or another child of the master)"
            )),
            "{line}"
        );
    }
    app.expect("event worker-calls done wid=0");
    // The master still has one worker, runs, and stops on SIGTERM only.
    app.expect("event run wid=0");
    app.signal(Signal::SIGTERM);
    app.expect("Caught SIGTERM signal, graceful exiting of master process");
    assert_eq!(app.wait(), 0);
    app.drain();
    let seen: Vec<&String> = app
        .seen()
        .iter()
        .filter(|l| {
            l.contains("Manager shutdown requested")
                || l.contains("Shutdown requested")
                || l.contains("event init wid=1")
                || l.contains("Reloading")
        })
        .collect();
    assert!(seen.is_empty(), "a worker's call acted: {seen:?}");
}
