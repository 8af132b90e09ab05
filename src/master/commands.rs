//! The control socket's requests, answered from the master's loop through
//! the same [`ManagerHandle`] calls the Rust, C and Python faces make:
//! nothing here changes the master but by stepping its machine.

use crate::control::protocol::{metrics_reply, status_reply};
use crate::control::{reply_error, reply_ok, resolve, Peer, Request, ServiceRef};
use crate::logging::CONTROL;
use crate::{metrics, ManagerHandle, ServiceId};

/// Answers one request with one reply line.
pub(crate) fn answer(handle: &ManagerHandle, request: Request, peer: Peer) -> String {
    let by = |what: &str| {
        log::info!(
            target: CONTROL,
            "{what} requested on the control socket by pid {} (uid {})",
            peer.pid,
            peer.uid
        );
    };
    match request {
        Request::Status => status_reply(&handle.status()),
        Request::Metrics => metrics_reply(&metrics::render(&handle.status())),
        Request::Reload => {
            by("Reload");
            match handle.reload() {
                Ok(()) => ok("reloading"),
                Err(e) => reply_error(e.to_string()),
            }
        }
        Request::Stop => {
            by("Stop");
            match handle.shutdown() {
                Ok(()) => ok("stopping"),
                Err(e) => reply_error(e.to_string()),
            }
        }
        Request::Scale { service, workers } => match find(handle, &service) {
            Err(e) => reply_error(e),
            Ok(id) => {
                by(&format!("Scale of service {id} to {workers} workers"));
                match handle.scale(id, workers) {
                    Ok(()) => ok(&format!("service {id} scaled to {workers} workers")),
                    Err(e) => reply_error(e.to_string()),
                }
            }
        },
        Request::Restart { service, worker } => match find(handle, &service) {
            Err(e) => reply_error(e),
            Ok(id) => {
                by(&format!("Restart of worker {worker} of service {id}"));
                if handle.restart(id, worker).unwrap_or(false) {
                    ok(&format!("worker {worker} of service {id} restarting"))
                } else {
                    reply_error(format!(
                        "service {id} has no running worker {worker} (or it is stopping)"
                    ))
                }
            }
        },
    }
}

fn ok(message: &str) -> String {
    let mut payload = serde_json::Map::new();
    payload.insert("message".into(), message.into());
    reply_ok(payload)
}

fn find(handle: &ManagerHandle, service: &ServiceRef) -> Result<ServiceId, String> {
    // The names alone: a whole status would describe every worker.
    let core = handle.shared.lock();
    let names: Vec<(u64, &str)> = core
        .machine
        .services_view()
        .map(|(id, name, ..)| (id.as_u64(), name))
        .collect();
    resolve(&names, service).map(ServiceId::from)
}
