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

/// `text` on one line: each line break becomes the two characters `\n`,
/// so that an error's record stays one line of a log.
///
/// ```
/// assert_eq!(cotyledon::logging::one_line("a\nb"), "a\\nb");
/// ```
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace("\r\n", "\\n")
            .replace(['\n', '\r'], "\\n")
            .into()
    } else {
        text.into()
    }
}

/// A minimal logger writing one line per record to stderr: the UTC time
/// to the millisecond, the pid of the process (the master's or a
/// worker's), then `LEVEL:target:message`, the format of Python's
/// `logging.basicConfig()`:
///
/// ```text
/// 2026-12-03T11:25:28.123Z [4242] INFO:cotyledon._service_manager:Manager shutdown requested
/// ```
///
/// Each record is one `write(2)`, so lines of the master and its workers
/// never interleave.
///
/// ```
/// cotyledon::logging::init_stderr(log::LevelFilter::Info);
/// log::info!(target: "app", "hello"); // prints <time> [<pid>] INFO:app:hello
/// ```
pub fn init_stderr(level: log::LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn utc_timestamp(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_millis()
    )
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
        let line = format!(
            "{} [{}] {level}:{}:{}\n",
            utc_timestamp(std::time::SystemTime::now()),
            std::process::id(),
            r.target(),
            r.args()
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_to_the_millisecond() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(utc_timestamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year), 23:59:59.999.
        assert_eq!(
            utc_timestamp(at(951_868_799, 999)),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            utc_timestamp(at(1_796_296_528, 123)),
            "2026-12-03T11:15:28.123Z"
        );
    }
}
