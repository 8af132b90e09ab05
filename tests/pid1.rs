//! PID 1 and containers: a master created as PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`, as a container runtime starts a
//! program without `--init`) splits off an init that reaps the orphans,
//! forwards signals to the master and exits with its status; `always`
//! does the same without a namespace, the init then being a subreaper.
//! The namespace tests need root (`unshare`); they say so and pass
//! without it.

mod common;

use std::time::{Duration, Instant};

use common::{field, App, SOON};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

const UNSHARE: [&str; 4] = ["unshare", "--pid", "--fork", "--mount-proc"];

fn can_unshare() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && std::process::Command::new("unshare")
            .args(["--pid", "--fork", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: needs root and unshare(1) for a PID namespace");
    }
    ok
}

/// The state letter of `pid` in `/proc/<pid>/stat` (host view), if any.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The parent of `pid` (host view).
fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The only child of `pid` (host view): the process `unshare --fork` made,
/// PID 1 of the namespace. Waits for it.
fn only_child(pid: i32) -> i32 {
    let deadline = Instant::now() + SOON;
    loop {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = text.split_whitespace().next() {
            return child.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "{pid} has no child");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The PID namespace `pid` is in, as `/proc/<pid>/ns/pid` names it.
fn pid_ns(pid: i32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// Every process of namespace `ns` (host pids) with its state letter.
fn members(ns: &str) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid_ns(pid).as_deref() == Some(ns) {
            if let Some(s) = state(pid) {
                out.push((pid, s));
            }
        }
    }
    out
}

/// Waits until namespace `ns` holds exactly `n` processes, none a zombie.
fn wait_members(ns: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = members(ns);
        if now.len() == n && now.iter().all(|(_, s)| *s != 'Z') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "namespace should hold {n} live processes, holds {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the master's session (its process group) when the test ends,
/// pass or fail: outside a namespace it is not in the app's group.
struct KillGroup(i32);
impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

#[test]
fn as_pid1_orphans_are_reaped_and_sigterm_stops_with_the_status() {
    if !can_unshare() {
        return;
    }
    let mut app = App::start_under(
        &UNSHARE,
        &[
            ("APP_WORKERS", "2"),
            ("APP_ORPHAN", "1"),
            ("APP_HOOKS", "1"),
            ("APP_DONE_EXIT", "7"),
        ],
    );
    let line = app.expect("event master pid=");
    // The namespace's first process is the init, the master its first fork.
    assert_eq!(
        (field(&line, "pid"), field(&line, "init")),
        (2, 1),
        "{line}"
    );
    let init = only_child(app.pid());
    let ns = pid_ns(init).expect("namespace");
    assert_ne!(Some(&ns), pid_ns(std::process::id() as i32).as_ref());
    app.expect_n("event orphan ", 2);
    // init, master, two workers: each orphan reaped, no zombie.
    wait_members(&ns, 4, SOON);

    kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
    app.expect("event hook terminate 1");
    app.expect_n("event terminate wid=", 2);
    app.expect("event master done");
    assert_eq!(app.wait(), 7, "the master's status comes out of unshare");
    wait_members(&ns, 0, SOON);
}

#[test]
fn as_pid1_signals_are_forwarded_and_a_killed_master_gives_128_plus_signal() {
    if !can_unshare() {
        return;
    }
    let mut app = App::start_under(&UNSHARE, &[("APP_WORKERS", "1"), ("APP_HOOKS", "1")]);
    app.expect("event master pid=");
    let init = only_child(app.pid());
    let ns = pid_ns(init).expect("namespace");
    app.expect("event run wid=0");
    let master = only_child(init);
    kill(Pid::from_raw(init), Signal::SIGHUP).unwrap();
    app.expect("event hook reload");
    kill(Pid::from_raw(master), Signal::SIGKILL).unwrap();
    assert_eq!(app.wait(), 128 + 9);
    wait_members(&ns, 0, SOON);
}

#[test]
fn always_splits_without_a_namespace_and_the_init_reaps_as_subreaper() {
    let mut app = App::start(&[
        ("APP_INIT", "always"),
        ("APP_WORKERS", "1"),
        ("APP_ORPHAN", "1"),
        ("APP_DONE_EXIT", "5"),
        ("APP_STATUS_ON_HUP", "1"),
        ("APP_HOLD_FILE", "1"),
    ]);
    let line = app.expect("event master pid=");
    let master = field(&line, "pid");
    let _cleanup = KillGroup(master);
    assert_eq!(field(&line, "init"), app.pid(), "{line}");
    assert_eq!(ppid(master), app.pid());
    let orphan = field(&app.expect("event orphan "), "pid");
    // The orphan went to the init (the nearest subreaper), which reaped it.
    let deadline = Instant::now() + SOON;
    while state(orphan).is_some() {
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} not reaped: state {:?}, parent {}",
            state(orphan),
            ppid(orphan)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The init (in its loop since it reaped) holds stdio and its own
    // self-pipe, none of the application's files (the master keeps the one
    // it opened).
    let fds = |pid: i32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) > Some(2))
            .map(|e| {
                std::fs::read_link(e.path())
                    .unwrap_or_default()
                    .display()
                    .to_string()
            })
            .collect()
    };
    let held = fds(app.pid());
    assert!(
        held.len() == 2 && held.iter().all(|t| t.starts_with("pipe:")),
        "{held:?}"
    );
    assert!(fds(master).iter().any(|t| t == "/dev/null"));
    // SIGUSR2 (the application's own handler) and SIGHUP reach the master
    // through the init; the status names the init.
    kill(Pid::from_raw(app.pid()), Signal::SIGUSR2).unwrap();
    kill(Pid::from_raw(app.pid()), Signal::SIGHUP).unwrap();
    let status = app.expect("event status ");
    assert!(
        status.contains(&format!(r#""pid":{master},"#))
            && status.contains(&format!(r#""init_pid":{}"#, app.pid())),
        "{status}"
    );
    kill(Pid::from_raw(app.pid()), Signal::SIGTERM).unwrap();
    app.expect("event terminate wid=0");
    app.expect("event master usr2=1");
    app.expect("event master done");
    assert_eq!(app.wait(), 5);
    common::wait_gone(&[master], SOON);
}

#[test]
fn the_setting_wins_over_the_environment_and_a_bad_value_is_an_error() {
    // Not PID 1, auto: no split, and the status has no init.
    let mut app = App::start(&[("APP_WORKERS", "1"), ("APP_STATUS_ON_HUP", "1")]);
    let line = app.expect("event master pid=");
    assert_eq!(field(&line, "pid"), app.pid());
    assert!(!line.contains("init="), "{line}");
    app.expect("event run wid=0");
    app.signal(Signal::SIGHUP);
    let status = app.expect("event status ");
    assert!(!status.contains("init_pid"), "{status}");
    drop(app);

    // The environment turns it on when the program leaves it on auto.
    let mut app = App::start(&[("APP_WORKERS", "1"), ("COTYLEDON_INIT", "Always")]);
    let line = app.expect("event master pid=");
    let _cleanup = KillGroup(field(&line, "pid"));
    assert_eq!(field(&line, "init"), app.pid(), "{line}");
    // Once run() handles SIGTERM (before, it kills the master: 128 + 15).
    app.expect("event run wid=0");
    kill(Pid::from_raw(app.pid()), Signal::SIGTERM).unwrap();
    assert_eq!(app.wait(), 0);
    drop(app);

    // A program's explicit choice wins over the environment.
    let mut app = App::start(&[
        ("APP_WORKERS", "1"),
        ("APP_INIT", "never"),
        ("COTYLEDON_INIT", "always"),
    ]);
    let line = app.expect("event master pid=");
    assert_eq!(field(&line, "pid"), app.pid());
    drop(app);

    let mut app = App::start(&[("APP_WORKERS", "1"), ("COTYLEDON_INIT", "sometimes")]);
    app.expect(r#"event error COTYLEDON_INIT must be auto, always or never, not: "sometimes""#);
    assert_eq!(app.wait(), 3);
}
