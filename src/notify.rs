//! systemd's notification protocol (`sd_notify`), on a plain AF_UNIX
//! datagram socket.
//!
//! Written here rather than taken from the sd-notify crate: its 0.5 release
//! sends nothing when `NOTIFY_SOCKET` names an abstract socket (`@...`),
//! which is what systemd itself hands to services.
//!
//! The master reads systemd's variables once, when `run()` starts
//! ([`Notifier::from_env`]); the machine says what to tell
//! ([`Notice`]); the loop sends it. Workers never see the variables: the
//! fork strips them from the child's environment ([`SYSTEMD_VARS`]).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variables systemd hands its main process: the master reads them,
/// no worker inherits them (nor anything a worker executes).
pub const SYSTEMD_VARS: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Sends `state` (e.g. `"STATUS=warming up"`) to the socket named by
/// `NOTIFY_SOCKET`. Returns `Ok(false)` when the variable is unset.
///
/// A leading `@` names a socket in the abstract namespace. A manager's
/// master speaks the protocol itself (`READY=1`, `STATUS=`, `RELOADING=1`,
/// `STOPPING=1`, `WATCHDOG=1`, ...); this is for programs that want to say
/// more, or that run without a manager.
///
/// ```
/// // Outside systemd, NOTIFY_SOCKET is unset and nothing is sent.
/// std::env::remove_var("NOTIFY_SOCKET");
/// assert!(!cotyledon::sd_notify("STATUS=ready to serve").unwrap());
/// ```
pub fn sd_notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    if path.is_empty() {
        return Ok(false);
    }
    let sock = UnixDatagram::unbound()?;
    send(&sock, &address(path.as_bytes())?, state.as_bytes())?;
    Ok(true)
}

fn address(path: &[u8]) -> io::Result<SocketAddr> {
    match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path)),
    }
}

fn send(sock: &UnixDatagram, addr: &SocketAddr, msg: &[u8]) -> io::Result<()> {
    let n = sock.send_to_addr(msg, addr)?;
    if n != msg.len() {
        return Err(io::Error::other("short write to NOTIFY_SOCKET"));
    }
    Ok(())
}

/// One thing the master tells systemd; the machine decides which, the
/// loop sends them (several in one datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `READY=1` (with `MAINPID=`): started, or a reload is done.
    Ready,
    /// `RELOADING=1` with `MONOTONIC_USEC=`, as `Type=notify-reload` wants.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// `EXTEND_TIMEOUT_USEC=`: the stop may take this long from now.
    ExtendTimeout(Duration),
    /// `STATUS=`, what `systemctl status` shows.
    Status(String),
    /// `WATCHDOG=1`: the master's loop is alive.
    Watchdog,
}

/// The datagram for `notices`: one `KEY=value` line each.
pub(crate) fn render(notices: &[Notice], mainpid: u32, monotonic: Duration) -> String {
    let mut lines = Vec::with_capacity(notices.len() + 1);
    for notice in notices {
        match notice {
            Notice::Ready => {
                lines.push("READY=1".to_string());
                lines.push(format!("MAINPID={mainpid}"));
            }
            Notice::Reloading => {
                lines.push("RELOADING=1".to_string());
                lines.push(format!("MONOTONIC_USEC={}", monotonic.as_micros()));
            }
            Notice::Stopping => lines.push("STOPPING=1".to_string()),
            Notice::ExtendTimeout(t) => {
                lines.push(format!("EXTEND_TIMEOUT_USEC={}", t.as_micros()))
            }
            // A status is one line: systemd takes the rest as other keys.
            Notice::Status(text) => lines.push(format!("STATUS={}", text.replace('\n', " "))),
            Notice::Watchdog => lines.push("WATCHDOG=1".to_string()),
        }
    }
    lines.join("\n")
}

/// The master's end of the protocol: the socket systemd named, read from
/// the environment once.
#[derive(Debug)]
pub(crate) struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// Half of this is how often `WATCHDOG=1` goes, when systemd watches
    /// this process.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if any: `WATCHDOG_USEC` counts
    /// when `WATCHDOG_PID` is unset or is `master`. `None` when the
    /// variable is unset, empty, or names no valid address (logged).
    pub(crate) fn from_env(master: u32) -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
        // Never blocking: a systemd that stops reading must not stop the
        // master's loop (a notice it cannot take is dropped, and logged).
        let made = address(path.as_bytes()).and_then(|addr| {
            let sock = UnixDatagram::unbound()?;
            sock.set_nonblocking(true)?;
            Ok((sock, addr))
        });
        let (sock, addr) = match made {
            Ok(made) => made,
            Err(e) => {
                log::debug!(target: crate::logging::MANAGER, "Systemd notification failed: {e}");
                return None;
            }
        };
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .map_or(true, |pid| pid == master);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            sock,
            addr,
            watchdog,
        })
    }

    /// Sends `notices` in one datagram.
    pub(crate) fn send(&self, notices: &[Notice]) -> io::Result<()> {
        let monotonic = if notices.contains(&Notice::Reloading) {
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map_or(Duration::ZERO, Duration::from)
        } else {
            Duration::ZERO
        };
        let text = render(notices, std::process::id(), monotonic);
        send(&self.sock, &self.addr, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_gives_one_line_per_key() {
        let text = render(
            &[
                Notice::Reloading,
                Notice::Status("a\nb".into()),
                Notice::Ready,
                Notice::ExtendTimeout(Duration::from_millis(1500)),
            ],
            42,
            Duration::from_micros(7),
        );
        assert_eq!(
            text,
            "RELOADING=1\nMONOTONIC_USEC=7\nSTATUS=a b\nREADY=1\nMAINPID=42\nEXTEND_TIMEOUT_USEC=1500000"
        );
    }
}
