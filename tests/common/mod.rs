//! Drives tests/support/app.rs as a real master process: reads its log
//! lines with deadlines, sends signals, and leaves nothing behind.
//!
//! The test process makes itself a child subreaper, so workers orphaned by
//! a dead master become its children and are reaped here rather than left
//! as zombies that look alive. Scenarios run one at a time (a global lock)
//! so that reaping every child never steals another test's status.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Deadline for anything the engine should do "at once".
pub const SOON: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());
static SUBREAPER: Once = Once::new();

pub fn app_path() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/examples/test_app
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let app = dir.join("examples").join("test_app");
    assert!(
        app.exists(),
        "{} missing: run the tests with `cargo test` (it builds examples)",
        app.display()
    );
    app
}

/// One scenario at a time, the test process a child subreaper: hold the
/// guard while the scenario's processes live.
pub fn serial() -> MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    SUBREAPER.call_once(|| {
        // SAFETY-free: plain prctl through libc.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
    serial
}

/// A running test application (the master) and what it printed.
pub struct App {
    child: Child,
    lines: Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
    unmatched: Vec<String>,
    _serial: MutexGuard<'static, ()>,
}

impl App {
    /// Starts the app with these `APP_*` variables, in a process group of
    /// its own.
    pub fn start(env: &[(&str, &str)]) -> App {
        Self::spawn(env, true, &[])
    }

    /// Starts the app as the last argument of `wrapper` (a command such as
    /// `unshare --pid --fork`), in a process group of its own: `pid()` is
    /// then the wrapper's.
    pub fn start_under(wrapper: &[&str], env: &[(&str, &str)]) -> App {
        Self::spawn(env, true, wrapper)
    }

    /// Starts the app in the test's process group: the master must make
    /// its own session.
    pub fn start_in_our_group(env: &[(&str, &str)]) -> App {
        Self::spawn(env, false, &[])
    }

    fn spawn(env: &[(&str, &str)], own_group: bool, wrapper: &[&str]) -> App {
        let serial = serial();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(app_path());
                cmd
            }
            None => Command::new(app_path()),
        };
        cmd.stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        cmd.env_remove("NOTIFY_SOCKET");
        // The tests choose; the caller's environment does not.
        cmd.env_remove("COTYLEDON_INIT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group from the start, so cleanup can kill it all.
        if own_group {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("spawn test_app");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        App {
            child,
            lines: rx,
            seen: Vec::new(),
            unmatched: Vec::new(),
            _serial: serial,
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the next line containing `needle`; panics at the deadline
    /// with everything seen.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, SOON)
    }

    /// Like [`expect`](Self::expect) with an explicit deadline. Lines are
    /// matched once each, in order, but a line that no `expect` matched yet
    /// stays available: interleaved output from several processes is fine.
    pub fn expect_within(&mut self, needle: &str, within: Duration) -> String {
        if let Some(i) = self.unmatched.iter().position(|l| l.contains(needle)) {
            return self.unmatched.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                    self.unmatched.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line with {needle:?} within {within:?}; seen:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "output ended before {needle:?}; seen:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// The next line not matched yet, if one comes at once.
    pub fn try_next(&mut self) -> Option<String> {
        self.try_next_within(Duration::ZERO)
    }

    /// The next line not matched yet, waiting at most `within`.
    pub fn try_next_within(&mut self, within: Duration) -> Option<String> {
        if !self.unmatched.is_empty() {
            return Some(self.unmatched.remove(0));
        }
        let line = self.lines.recv_timeout(within).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Drops the memory of lines seen (long runs).
    pub fn forget_seen(&mut self) {
        self.seen.clear();
    }

    /// Collects `n` lines containing `needle`.
    pub fn expect_n(&mut self, needle: &str, n: usize) -> Vec<String> {
        (0..n).map(|_| self.expect(needle)).collect()
    }

    /// Reads everything until the output ends (the master and all workers
    /// closed stderr), within [`SOON`].
    pub fn drain(&mut self) -> Vec<String> {
        let deadline = Instant::now() + SOON;
        let mut out = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    self.seen.push(l.clone());
                    out.push(l);
                }
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("output never ended; seen:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Every line read so far (since the last [`forget_seen`](Self::forget_seen)),
    /// matched or not.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal master");
    }

    /// Waits for the master to exit; returns its exit code (or -signal).
    pub fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                use std::os::unix::process::ExitStatusExt;
                return st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
            }
            assert!(
                Instant::now() < deadline,
                "master still running; seen:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Whatever happened, nothing of this app survives the test.
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        reap_orphans();
    }
}

/// Reaps every child of the test process that has ended (orphaned workers
/// handed to us as subreaper).
pub fn reap_orphans() {
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Whether `pid` is a live process (a zombie is not; one that is ours is
/// reaped on the way).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
    if state == Some('Z') || state == Some('X') {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        return false;
    }
    true
}

/// Waits until process `pid` is in `state` (as `/proc/<pid>/stat` says:
/// 'T' stopped, 'Z' zombie...); panics at the deadline.
pub fn wait_state(pid: i32, state: char, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let now = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        if now == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} not in state {state} after {within:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until none of `pids` is alive; panics at the deadline.
pub fn wait_gone(pids: &[i32], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        reap_orphans();
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still alive after {within:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until each of `pids` is a zombie whose status its parent can
/// take: the process looks dead ('Z') as soon as its main thread exited,
/// but its status is there only once its last thread is gone too. Panics
/// at the deadline.
pub fn wait_reapable(pids: &[i32], within: Duration) {
    let deadline = Instant::now() + within;
    let reapable = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        state == Some('Z') && threads == 1
    };
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| !reapable(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not reapable zombies after {within:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every live process whose process group is `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest: state ppid pgrp ...
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The value of `key=` in an event line.
pub fn field(line: &str, key: &str) -> i32 {
    let pat = format!("{key}=");
    let start = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pat.len();
    line[start..]
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {key} in {line}"))
}

/// Waits for `n` workers to be running; returns their pids by worker id.
pub fn running_workers(app: &mut App, n: usize) -> Vec<i32> {
    let mut pids = vec![0; n];
    for line in app.expect_n("event run ", n) {
        pids[field(&line, "wid") as usize] = field(&line, "pid");
    }
    assert!(
        pids.iter().all(|p| *p > 0),
        "ids 0..{n} each ran once: {pids:?}"
    );
    pids
}

/// Waits for `pids.len()` `event reload` lines and checks they come from
/// exactly these worker processes (reloaded in place, not restarted).
pub fn expect_reloaded_in_place(app: &mut App, pids: &[i32]) {
    let mut reloaded: Vec<i32> = app
        .expect_n("event reload ", pids.len())
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    reloaded.sort_unstable();
    let mut want = pids.to_vec();
    want.sort_unstable();
    assert_eq!(reloaded, want, "reloaded in place, same processes");
}

/// The pids whose status the application itself took, as the test app
/// reports them (`event <who> took pid=...`, `who` being `thief` for its
/// `waitpid(-1)` thread, `hook thief` for its dead-worker hook), among the
/// lines seen so far.
pub fn taken_by(app: &App, who: &str) -> Vec<i32> {
    let needle = format!("event {who} took ");
    app.seen
        .iter()
        .filter(|l| l.contains(&needle))
        .map(|l| field(l, "pid"))
        .collect()
}

/// The syscall a thread is blocked in, from `/proc/<pid>/task/<tid>/syscall`
/// (`None` while it runs, or when the kernel does not say).
pub fn blocked_in(pid: i32, tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Waits until a thread of process `pid` other than its main one is
/// blocked in `waitpid(-1)` (the `wait4` or `waitid` syscall); panics at
/// the deadline.
pub fn wait_thread_in_waitpid(pid: i32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let blocked = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|tid| *tid != pid)
                    .any(|tid| {
                        matches!(blocked_in(pid, tid), Some(nr) if nr == libc::SYS_wait4 || nr == libc::SYS_waitid)
                    })
            })
            .unwrap_or(false);
        if blocked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no thread of {pid} blocked in waitpid(-1) after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
