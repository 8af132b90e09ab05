//! Log targets: the logger names Cotyledon users filter and grep on.

/// Target of the master's records.
pub const MANAGER: &str = "cotyledon._service_manager";
/// Target of the workers' records.
pub const WORKER: &str = "cotyledon._service_worker";
/// Target of hook failures (the logger the reference uses for them).
pub const UTILS: &str = "cotyledon._utils";
/// Target of the control socket's records (refused peers, errors).
pub const CONTROL: &str = "cotyledon.control";

/// Renders a caught panic payload as text (`panic: <message>`).
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// assert_eq!(cotyledon::logging::panic_message(&*p), "panic: boom");
/// ```
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}

/// A minimal logger writing `LEVEL:target:message` lines to stderr, the
/// format of Python's `logging.basicConfig()`, so Rust programs print the
/// same lines as Python ones. Each record is one `write(2)`.
///
/// ```
/// cotyledon::logging::init_stderr(log::LevelFilter::Info);
/// log::info!(target: "app", "hello"); // prints INFO:app:hello
/// ```
pub fn init_stderr(level: log::LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        use std::os::fd::AsFd;
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Warn => "WARNING",
            l => l.as_str(),
        };
        let line = format!("{level}:{}:{}\n", r.target(), r.args());
        // Straight to fd 2, not through `std::io::stderr()`: its lock may
        // be held by another thread of the master at the moment of a fork,
        // and a worker's first line would then wait forever.
        let stderr = std::io::stderr();
        let mut rest = line.as_bytes();
        while !rest.is_empty() {
            match nix::unistd::write(stderr.as_fd(), rest) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }

    fn flush(&self) {}
}
