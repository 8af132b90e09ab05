//! systemd's notification protocol (`sd_notify`), on a plain AF_UNIX
//! datagram socket.
//!
//! Written here rather than taken from the sd-notify crate: its 0.5 release
//! sends nothing when `NOTIFY_SOCKET` names an abstract socket (`@...`),
//! which is what systemd itself hands to services.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::logging::MANAGER;

/// Sends `state` (e.g. `"STATUS=warming up"`) to the socket named by
/// `NOTIFY_SOCKET`. Returns `Ok(false)` when the variable is unset.
///
/// A leading `@` names a socket in the abstract namespace.
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
    send_to(path.as_bytes(), state.as_bytes())?;
    Ok(true)
}

fn send_to(path: &[u8], msg: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let addr = match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?,
    };
    let n = sock.send_to_addr(msg, &addr)?;
    if n != msg.len() {
        return Err(io::Error::other("short write to NOTIFY_SOCKET"));
    }
    Ok(())
}

/// Tells systemd the service is ready, once: `READY=1`, then
/// `NOTIFY_SOCKET` is removed from the environment so that workers cannot
/// send it again. A failure is logged at DEBUG and otherwise ignored (the
/// variable then stays, as with Cotyledon).
pub(crate) fn ready_once() {
    match sd_notify("READY=1") {
        Ok(false) => {}
        Ok(true) => crate::sys::unsetenv("NOTIFY_SOCKET"),
        // Kept set, as Cotyledon does: the workers may try again.
        Err(e) => log::debug!(target: MANAGER, "Systemd notification failed: {e}"),
    }
}
