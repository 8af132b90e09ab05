//! Nothing outlives the master: workers that ignore or block SIGTERM and
//! SIGINT, hang in terminate(), or are stopped, and what they started, are
//! gone when the master's process has ended, whichever way it ended.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `(worker pids, their stubborn children's pids)` once `n` run.
fn wedged(app: &mut App, n: usize) -> (Vec<i32>, Vec<i32>) {
    let workers = running_workers(app, n);
    let stubborn = app
        .expect_n("event stubborn", n)
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    (workers, stubborn)
}

fn still_alive(pids: &[i32]) -> Vec<i32> {
    reap_orphans();
    pids.iter().copied().filter(|p| alive(*p)).collect()
}

#[test]
fn past_the_graceful_deadline_what_is_left_is_killed_and_reaped() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_IGNORE_TERM", "1"),
        ("APP_IGNORE_INT", "1"),
        ("APP_STUBBORN_GRANDCHILD", "1"),
        ("APP_MASTER_TIMEOUT", "1"),
        ("APP_KILL_GRACE_MS", "300"),
    ]);
    let (workers, stubborn) = wedged(&mut app, 2);
    // One of them is even stopped.
    kill(Pid::from_raw(workers[1]), Signal::SIGSTOP).unwrap();
    wait_state(workers[1], 'T', SOON);
    app.signal(Signal::SIGTERM);
    app.expect("Graceful shutdown timeout exceeded, instantaneous exiting of master process");
    let line = app.expect("killing with SIGKILL");
    assert!(
        line.contains(&format!("workers {}, {}", workers[0], workers[1])),
        "{line}"
    );
    assert!(line.contains("the rest of the process group"), "{line}");
    assert_eq!(app.wait(), 1);
    // Gone when the master is: its workers reaped, the group waited for.
    let left = still_alive(&[workers.clone(), stubborn].concat());
    assert!(left.is_empty(), "outlived the master: {left:?}");
}

#[test]
fn sigint_kills_what_ignores_it() {
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_TERM_HANG", "1"),
        ("APP_IGNORE_INT", "1"),
        ("APP_STUBBORN_GRANDCHILD", "1"),
        ("APP_KILL_GRACE_MS", "200"),
    ]);
    let (workers, stubborn) = wedged(&mut app, 1);
    app.signal(Signal::SIGINT);
    app.expect("Caught SIGINT signal, instantaneous exiting");
    app.expect("Still alive 200 ms after SIGINT, killing with SIGKILL");
    assert_eq!(app.wait(), 1);
    let left = still_alive(&[workers, stubborn].concat());
    assert!(left.is_empty(), "outlived the master: {left:?}");
}

#[test]
fn a_graceful_stop_waits_for_what_the_workers_started() {
    // Children that obey SIGTERM: the stop waits for them, status 0.
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_GRANDCHILD", "1")]);
    let workers = running_workers(&mut app, 2);
    let children: Vec<i32> = app
        .expect_n("event grandchild", 2)
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let left = still_alive(&[workers, children].concat());
    assert!(left.is_empty(), "outlived the master: {left:?}");
    assert!(
        !app.seen.iter().any(|l| l.contains("SIGKILL")),
        "no escalation needed"
    );

    // A child that ignores SIGTERM holds the stop until the deadline,
    // then is killed.
    drop(app);
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_STUBBORN_GRANDCHILD", "1"),
        ("APP_MASTER_TIMEOUT", "1"),
        ("APP_KILL_GRACE_MS", "200"),
    ]);
    let (workers, stubborn) = wedged(&mut app, 1);
    app.signal(Signal::SIGTERM);
    app.expect("event terminate wid=0");
    app.expect("Graceful shutdown timeout exceeded");
    let line = app.expect("killing with SIGKILL");
    assert!(
        line.ends_with("SIGKILL: the rest of the process group"),
        "{line}"
    );
    assert_eq!(app.wait(), 1);
    let left = still_alive(&[workers, stubborn].concat());
    assert!(left.is_empty(), "outlived the master: {left:?}");
}

#[test]
fn a_master_that_leads_no_group_kills_its_workers_trees() {
    let mut app = App::start_in_our_group(&[
        ("APP_NO_SESSION", "1"),
        ("APP_WORKERS", "2"),
        ("APP_IGNORE_TERM", "1"),
        ("APP_IGNORE_INT", "1"),
        ("APP_STUBBORN_GRANDCHILD", "1"),
        ("APP_MASTER_TIMEOUT", "1"),
        ("APP_KILL_GRACE_MS", "200"),
    ]);
    let (workers, stubborn) = wedged(&mut app, 2);
    app.signal(Signal::SIGTERM);
    let line = app.expect("killing with SIGKILL");
    assert!(!line.contains("process group"), "{line}");
    assert_eq!(app.wait(), 1);
    let left = still_alive(&workers);
    assert!(left.is_empty(), "workers outlived the master: {left:?}");
    // Their children got SIGKILL before the workers did (found then);
    // nobody waits for a process it cannot reap, so allow it a moment.
    wait_gone(&stubborn, Duration::from_secs(2));
}

#[test]
fn a_killed_master_takes_everything_with_it() {
    let mut app = App::start(&[("APP_WORKERS", "2"), ("APP_STUBBORN_GRANDCHILD", "1")]);
    let (workers, stubborn) = wedged(&mut app, 2);
    app.signal(Signal::SIGKILL);
    app.wait();
    app.expect_n("Parent process has died unexpectedly", 2);
    wait_gone(&[workers, stubborn].concat(), SOON);
}
