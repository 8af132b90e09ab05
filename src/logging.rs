//! Log targets: the logger names Cotyledon users filter and grep on.

/// Target of the master's records.
pub const MANAGER: &str = "cotyledon._service_manager";
/// Target of the workers' records.
pub const WORKER: &str = "cotyledon._service_worker";
/// Target of hook failures (the logger the reference uses for them).
pub const UTILS: &str = "cotyledon._utils";

/// Renders a caught panic payload as text.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}
