//! A master started in the foreground of a terminal by a script (a shell
//! without job control, under a pty) stays in the terminal's foreground
//! process group: Ctrl-C reaches it and its workers, and nothing outlives
//! the terminal's interrupt.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Instant;

use common::*;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Kills what it knows (each pid and its process group) when dropped,
/// whatever the test's outcome.
struct Leftovers(Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        reap_orphans();
    }
}

#[test]
fn ctrl_c_in_a_terminal_stops_the_master_and_its_workers() {
    let _serial = serial();
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into m and s.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are new descriptors that nothing else owns.
    let (pty_master, pty_slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    let slave = pty_slave.as_raw_fd();
    let mut cmd = Command::new("sh");
    // The script runs the master as its child, in its own process group
    // (no job control), as a launcher under a pty does.
    cmd.arg("-c")
        .arg(format!("'{}'; exit 0", app_path().display()))
        .env("APP_WORKERS", "2")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::from(pty_slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty_slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty_slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; the child gets a
    // session of its own whose controlling terminal is the pty, so its
    // process group is the terminal's foreground one.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut shell = cmd.spawn().expect("spawn sh");
    let mut leftovers = Leftovers(vec![shell.id() as i32]);
    drop(pty_slave);
    let mut terminal = std::fs::File::from(pty_master);
    let (tx, rx) = channel();
    let reader = terminal.try_clone().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut expect = |needle: &str| -> String {
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no {needle:?}; seen:\n{}", seen.join("\n")),
            }
        }
    };
    let master = field(&expect("event master pid="), "pid");
    leftovers.0.push(master);
    let workers: Vec<i32> = (0..2)
        .map(|_| field(&expect("event run wid="), "pid"))
        .collect();
    leftovers.0.extend(&workers);
    // Ctrl-C.
    terminal.write_all(&[0x03]).unwrap();
    expect("Caught SIGINT signal, instantaneous exiting");
    let _ = shell.wait();
    wait_gone(&[vec![master], workers].concat(), SOON);
}
