//! `/proc` and process attributes: threads, children, names, process
//! group members.

use std::ffi::CString;
use std::io;

use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::{getpgid, Pid};

/// The fields of a `/proc/<pid>/stat` line after the `)` that closes the
/// name (field 2), which may itself hold spaces and parentheses. The first
/// item is field 3 (state).
fn stat_fields_after_comm(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_ascii_whitespace().collect())
}

/// How many threads this process has, from `/proc/self/stat`; `None`
/// when the kernel does not say.
pub(crate) fn thread_count() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The name (field 2) may hold spaces and parentheses: count fields
    // after its closing one. num_threads is field 20, the 18th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(17)?.parse().ok()
}

/// The pids of the children the calling thread forked and nobody reaped
/// yet (zombies included), sorted; `None` when the kernel does not say.
pub(crate) fn children_of_this_thread() -> Option<Vec<i32>> {
    let text = std::fs::read_to_string("/proc/thread-self/children").ok()?;
    let mut pids: Vec<i32> = text
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    Some(pids)
}

/// The pids of every process in process group `pgrp` except the calling
/// process, sorted, from `/proc/<pid>/stat`: what signalling the group
/// without reaching the caller itself has to address. Zombies are included
/// (callers decide); processes that vanish while `/proc` is read, and
/// entries that cannot be parsed, are skipped.
pub(crate) fn group_members(pgrp: i32) -> Vec<i32> {
    group_members_where(pgrp, |_| true)
}

/// [`group_members`] without zombies: the members that still run (a
/// zombie has ended; only its parent's reaping is left).
pub(crate) fn live_group_members(pgrp: i32) -> Vec<i32> {
    group_members_where(pgrp, |pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // State is field 3: the 1st after the name.
                let state = *stat_fields_after_comm(&stat)?.first()?;
                Some(!matches!(state, "Z" | "X" | "x"))
            })
            .unwrap_or(false)
    })
}

fn group_members_where(pgrp: i32, keep: impl Fn(i32) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // `getpgid` asks the kernel about one process in one system call;
    // reading `/proc/<pid>/stat` costs an open, a formatted read and a
    // close for every process of the system, and leaves dentries the
    // kernel must drop again when each reaped worker goes (a graceful
    // stop of 64 workers spent a third of the master's CPU there). Only
    // the members found are looked at further.
    let mut pids: Vec<i32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| getpgid(Some(Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == pgrp))
        .filter(|&pid| keep(pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// Every descendant of `roots` (children, their children, ...), from one
/// pass over `/proc` reading each process's parent. A parent that is the
/// same whichever of its threads forked: the per-thread children lists
/// would miss a child whose forking thread ended during the walk (its
/// children move to another thread of the process, maybe one already
/// read). A descendant whose parent already ended was handed to a reaper
/// and is no longer found; processes that vanish meanwhile are skipped.
pub(crate) fn descendants(roots: &[i32]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat_fields_after_comm(&stat)?.get(1)?.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen: std::collections::HashSet<i32> = roots.iter().copied().collect();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        for child in children.get(&p).into_iter().flatten() {
            if seen.insert(*child) {
                found.push(*child);
                todo.push(*child);
            }
        }
    }
    found
}

/// Whether this process has a child (of any of its threads, zombies
/// included): the cheap look before [`descendants`]' pass over `/proc`.
/// `waitid(WNOHANG | WNOWAIT)` neither waits nor reaps, and fails with
/// `ECHILD` exactly when there is none; the kernel answers
/// under the lock that also guards the move of a child to another thread
/// when the thread that forked it ends.
pub(crate) fn has_children() -> bool {
    let flags = WaitPidFlag::WEXITED
        | WaitPidFlag::WSTOPPED
        | WaitPidFlag::WCONTINUED
        | WaitPidFlag::WNOHANG
        | WaitPidFlag::WNOWAIT
        | WaitPidFlag::__WALL;
    !matches!(waitid(Id::All, flags), Err(nix::errno::Errno::ECHILD))
}

/// The foreground process group of the terminal `tty` is open on.
///
/// (libc's `tcgetpgrp` rather than nix's: nix's `term` feature brings
/// termios symbols that a fully static link of libcotyledon cannot
/// resolve.)
pub(crate) fn foreground_group(tty: &impl std::os::fd::AsRawFd) -> Option<i32> {
    // SAFETY: tcgetpgrp reads the terminal's state through a descriptor
    // that `tty` keeps open for the call; no memory of ours is touched.
    let pgrp = unsafe { libc::tcgetpgrp(tty.as_raw_fd()) };
    (pgrp > 0).then_some(pgrp)
}

/// Sets the thread name of the calling thread (shown as the process name
/// by `ps` and `top` when called from the main thread).
pub(crate) fn set_comm_name(name: &str) {
    // The kernel keeps 15 bytes; cut on a char boundary.
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(c) = CString::new(&name[..end]) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string from its second
        // argument; `c` is one (at most 15 bytes plus the NUL, within the
        // kernel's 16-byte limit) and stays alive across the call. The other
        // arguments are unused integers.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
    }
}

/// Overwrites the process's argv area (what `ps -f` shows) with `title`.
///
/// The area is the one the kernel reports in `/proc/self/stat`; the title is
/// cut to fit it and the rest is zeroed. Only called when the caller opted
/// in, since it changes what `std::env::args()` returns afterwards.
pub(crate) fn set_argv_title(title: &str) -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the ")" of the comm name; arg_start and arg_end are
    // fields 48 and 49 of the whole line (1-based).
    let fields = stat_fields_after_comm(&stat)
        .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?;
    // `fields` starts at field 3 (state).
    let get = |n: usize| -> io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))
    };
    let (start, end) = (get(48)?, get(49)?);
    if end <= start + 1 {
        return Err(io::Error::other("empty argv area"));
    }
    let len = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [start, end) is this process's own argv area as reported by
    // the kernel, mapped writable on the initial stack for the whole life of
    // the process. We copy n <= len - 1 bytes from `title` (which cannot
    // overlap it: it is a Rust string, not argv memory) and zero the other
    // len - n bytes, so every write stays inside [start, end). Nothing in
    // Rust holds a reference into that area (std copies args at startup).
    unsafe {
        let dst = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
        std::ptr::write_bytes(dst.add(n), 0, len - n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_name_with_spaces_and_parens() {
        let line = "42 (a) b (c)) S 1 7 7 0 -1";
        let f = stat_fields_after_comm(line).unwrap();
        assert_eq!(f[..4], ["S", "1", "7", "7"]);
    }

    #[test]
    fn descendants_are_found_through_every_generation() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & wait' & sleep 30 & wait"])
            .spawn()
            .expect("spawn sh");
        let root = child.id() as i32;
        // Three processes under sh: a sleep, and a sh with its own sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = descendants(&[root]);
            if found.len() >= 3 || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        for pid in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(!found.contains(&root));
    }

    #[test]
    fn group_members_lists_a_child_but_not_the_caller() {
        let me = std::process::id() as i32;
        let pgrp = nix::unistd::getpgrp().as_raw();
        assert!(!group_members(pgrp).contains(&me));

        // A child spawned by Command stays in our process group.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let members = group_members(pgrp);
        let _ = child.kill();
        let _ = child.wait();
        assert!(members.contains(&pid), "{pid} not in {members:?}");
        assert!(!members.contains(&me));
        assert!(members.windows(2).all(|w| w[0] < w[1]), "not sorted");
    }

    #[test]
    fn live_group_members_leave_out_a_zombie_and_has_children_sees_it() {
        let pgrp = nix::unistd::getpgrp().as_raw();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(has_children());
        assert!(live_group_members(pgrp).contains(&pid));
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        // Ended, not reaped: a zombie, still a member and still a child.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while live_group_members(pgrp).contains(&pid) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let live = live_group_members(pgrp);
        let all = group_members(pgrp);
        let still_child = has_children();
        let _ = child.wait();
        assert!(!live.contains(&pid), "zombie {pid} counted live: {live:?}");
        assert!(all.contains(&pid), "zombie {pid} not a member: {all:?}");
        assert!(still_child, "a zombie child is a child");
    }
}
