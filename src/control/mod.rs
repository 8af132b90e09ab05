//! The control socket: a local line-based JSON protocol to ask a running
//! master for its status and metrics, and to reload, scale, restart a
//! worker or stop it. [`protocol`] is the pure part (parsing and replies),
//! [`server`] the non-blocking UNIX socket server the master's poll loop
//! drives; the client is [`crate::ctl`].

pub mod protocol;
pub mod server;

pub use protocol::{parse_request, reply_error, reply_ok, resolve, Request, ServiceRef};
pub use server::{ControlServer, Limits, Peer};
