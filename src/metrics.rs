//! Prometheus metrics of a running master, rendered from its [`Status`]
//! (pure), plus an atomic writer for node_exporter's textfile collector.
//!
//! Text exposition format 0.0.4: each family has its `# HELP` and `# TYPE`
//! lines, then one sample per service labelled
//! `service="<name>",service_id="<id>"` (names are not unique, ids are).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use crate::status::{ServiceStatus, Status};

/// A per-service family: name, type, help, and the value of a service.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ServiceStatus) -> u64,
);

/// Renders the metrics of `status` in the Prometheus text format.
///
/// ```
/// use cotyledon::status::*;
/// let s = Status {
///     pid: 1, state: ManagerState::Running, started_at: 1700000000.0,
///     services: vec![], limiter: LimiterStatus { waiting: false, until: None },
///     init_pid: None,
///     stopped_by: None,
/// };
/// assert!(cotyledon::metrics::render(&s)
///     .contains("\ncotyledon_master_start_time_seconds 1700000000\n"));
/// ```
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let per_service: &[Family] = &[
        (
            "cotyledon_worker_starts_total",
            "counter",
            "Workers forked since the master started.",
            |s| s.counters.starts,
        ),
        (
            "cotyledon_worker_restarts_total",
            "counter",
            "Forks that replaced a worker id that had run before.",
            |s| s.counters.restarts,
        ),
        (
            "cotyledon_limiter_waits_total",
            "counter",
            "Forks the fork-rate limiter held back.",
            |s| s.counters.limiter_waits,
        ),
        (
            "cotyledon_reloads_total",
            "counter",
            "Reloads that reached the service's workers.",
            |s| s.counters.reloads,
        ),
        (
            "cotyledon_workers_wanted",
            "gauge",
            "The worker count the service is configured with.",
            |s| s.workers.max(0) as u64,
        ),
        (
            "cotyledon_workers_running",
            "gauge",
            "Workers of the service running now.",
            |s| s.running as u64,
        ),
        (
            "cotyledon_worker_failures_total",
            "counter",
            "Worker exits that failed and counted for the restart policy (not caused by the engine).",
            |s| s.counters.failures,
        ),
        (
            "cotyledon_backoff_waits_total",
            "counter",
            "Respawns the service's restart backoff held back.",
            |s| s.counters.backoff_waits,
        ),
        (
            "cotyledon_workers_finished",
            "gauge",
            "Worker ids the restart policy does not start again.",
            |s| s.worker_list.iter().filter(|w| w.finished).count() as u64,
        ),
        (
            "cotyledon_workers_backing_off",
            "gauge",
            "Worker ids whose respawn waits for the restart backoff.",
            |s| {
                s.worker_list
                    .iter()
                    .filter(|w| w.pid.is_none() && w.restart_at.is_some())
                    .count() as u64
            },
        ),
    ];
    for (name, kind, help, get) in per_service {
        header(&mut out, name, kind, help);
        for s in &status.services {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(s), get(s));
        }
    }

    let name = "cotyledon_worker_exits_total";
    header(
        &mut out,
        name,
        "counter",
        "Worker exits by cause: clean (status 0), error (nonzero or lost status), signal.",
    );
    for s in &status.services {
        let c = &s.counters;
        for (cause, n) in [
            ("clean", c.exits_clean),
            ("error", c.exits_error),
            ("signal", c.exits_signal),
        ] {
            let _ = writeln!(out, "{name}{{{},cause=\"{cause}\"}} {n}", labels(s));
        }
    }

    let name = "cotyledon_master_start_time_seconds";
    header(
        &mut out,
        name,
        "gauge",
        "When the master started supervising, in seconds since the Unix epoch.",
    );
    let _ = writeln!(out, "{name} {}", float(status.started_at));
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labels(s: &ServiceStatus) -> String {
    format!(
        "service=\"{}\",service_id=\"{}\"",
        escape_label(&s.name),
        s.id
    )
}

/// Escapes a label value: backslash, double quote and newline are the
/// three characters the format reserves there.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: Rust prints `inf` and `NaN`; the format wants `+Inf`,
/// `-Inf` and `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory (same filesystem, so `rename` is atomic), fsynced, then
/// renamed over `path`. A scraper never sees a half-written file. The
/// temporary name is `.<name>.<pid>.tmp`, which node_exporter's textfile
/// collector ignores (it reads only `*.prom`). The file is mode 0644 (less
/// the umask) so that a collector running as another user can read it.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("metrics file {}: not a file name", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("metrics file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::*;

    fn service(id: u64, name: &str) -> ServiceStatus {
        ServiceStatus {
            id,
            name: name.into(),
            key: None,
            workers: 3,
            running: 2,
            worker_list: vec![],
            counters: Counters {
                starts: 5,
                exits_clean: 1,
                exits_error: 2,
                exits_signal: 3,
                restarts: 4,
                limiter_waits: 6,
                reloads: 7,
                failures: 8,
                backoff_waits: 9,
            },
            policy: PolicyStatus::default(),
        }
    }

    fn status(services: Vec<ServiceStatus>) -> Status {
        Status {
            pid: 42,
            state: ManagerState::Running,
            started_at: 1700000000.25,
            services,
            limiter: LimiterStatus {
                waiting: false,
                until: None,
            },
            init_pid: None,
            stopped_by: None,
        }
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render(&status(vec![service(0, "api"), service(3, "jobs")]));
        let want = r#"# HELP cotyledon_worker_starts_total Workers forked since the master started.
# TYPE cotyledon_worker_starts_total counter
cotyledon_worker_starts_total{service="api",service_id="0"} 5
cotyledon_worker_starts_total{service="jobs",service_id="3"} 5
# HELP cotyledon_worker_restarts_total Forks that replaced a worker id that had run before.
# TYPE cotyledon_worker_restarts_total counter
cotyledon_worker_restarts_total{service="api",service_id="0"} 4
cotyledon_worker_restarts_total{service="jobs",service_id="3"} 4
# HELP cotyledon_limiter_waits_total Forks the fork-rate limiter held back.
# TYPE cotyledon_limiter_waits_total counter
cotyledon_limiter_waits_total{service="api",service_id="0"} 6
cotyledon_limiter_waits_total{service="jobs",service_id="3"} 6
# HELP cotyledon_reloads_total Reloads that reached the service's workers.
# TYPE cotyledon_reloads_total counter
cotyledon_reloads_total{service="api",service_id="0"} 7
cotyledon_reloads_total{service="jobs",service_id="3"} 7
# HELP cotyledon_workers_wanted The worker count the service is configured with.
# TYPE cotyledon_workers_wanted gauge
cotyledon_workers_wanted{service="api",service_id="0"} 3
cotyledon_workers_wanted{service="jobs",service_id="3"} 3
# HELP cotyledon_workers_running Workers of the service running now.
# TYPE cotyledon_workers_running gauge
cotyledon_workers_running{service="api",service_id="0"} 2
cotyledon_workers_running{service="jobs",service_id="3"} 2
# HELP cotyledon_worker_failures_total Worker exits that failed and counted for the restart policy (not caused by the engine).
# TYPE cotyledon_worker_failures_total counter
cotyledon_worker_failures_total{service="api",service_id="0"} 8
cotyledon_worker_failures_total{service="jobs",service_id="3"} 8
# HELP cotyledon_backoff_waits_total Respawns the service's restart backoff held back.
# TYPE cotyledon_backoff_waits_total counter
cotyledon_backoff_waits_total{service="api",service_id="0"} 9
cotyledon_backoff_waits_total{service="jobs",service_id="3"} 9
# HELP cotyledon_workers_finished Worker ids the restart policy does not start again.
# TYPE cotyledon_workers_finished gauge
cotyledon_workers_finished{service="api",service_id="0"} 0
cotyledon_workers_finished{service="jobs",service_id="3"} 0
# HELP cotyledon_workers_backing_off Worker ids whose respawn waits for the restart backoff.
# TYPE cotyledon_workers_backing_off gauge
cotyledon_workers_backing_off{service="api",service_id="0"} 0
cotyledon_workers_backing_off{service="jobs",service_id="3"} 0
# HELP cotyledon_worker_exits_total Worker exits by cause: clean (status 0), error (nonzero or lost status), signal.
# TYPE cotyledon_worker_exits_total counter
cotyledon_worker_exits_total{service="api",service_id="0",cause="clean"} 1
cotyledon_worker_exits_total{service="api",service_id="0",cause="error"} 2
cotyledon_worker_exits_total{service="api",service_id="0",cause="signal"} 3
cotyledon_worker_exits_total{service="jobs",service_id="3",cause="clean"} 1
cotyledon_worker_exits_total{service="jobs",service_id="3",cause="error"} 2
cotyledon_worker_exits_total{service="jobs",service_id="3",cause="signal"} 3
# HELP cotyledon_master_start_time_seconds When the master started supervising, in seconds since the Unix epoch.
# TYPE cotyledon_master_start_time_seconds gauge
cotyledon_master_start_time_seconds 1700000000.25
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn finished_and_backing_off_ids_are_gauges() {
        let mut s = service(1, "x");
        let worker = |id, finished, restart_at| WorkerStatus {
            worker_id: id,
            pid: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            stopping: false,
            finished,
            restart_at,
            failures: 1,
            restarted: false,
        };
        s.worker_list = vec![
            worker(0, true, None),
            worker(1, false, Some(5.0)),
            worker(2, false, Some(6.0)),
        ];
        let text = render(&status(vec![s]));
        assert!(text.contains("cotyledon_workers_finished{service=\"x\",service_id=\"1\"} 1\n"));
        assert!(text.contains("cotyledon_workers_backing_off{service=\"x\",service_id=\"1\"} 2\n"));
    }

    #[test]
    fn negative_count_is_zero_wanted() {
        let mut s = service(1, "x");
        s.workers = -2;
        assert!(render(&status(vec![s]))
            .contains("cotyledon_workers_wanted{service=\"x\",service_id=\"1\"} 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("l1\nl2"), "l1\\nl2");
        assert_eq!(escape_label("plain {},=é"), "plain {},=é");
        let text = render(&status(vec![service(9, "we\"ird\\\nname")]));
        assert!(
            text.contains(
                r#"cotyledon_worker_starts_total{service="we\"ird\\\nname",service_id="9"} 5"#
            ),
            "{text}"
        );
        // Every sample stays on one line.
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("cotyledon_")));
    }

    #[test]
    fn floats_use_the_formats_spelling() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(12.0), "12");
        assert_eq!(float(0.5), "0.5");
    }

    #[test]
    fn textfile_is_replaced_atomically() {
        let dir = std::env::temp_dir().join(format!("cotyledon-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("cotyledon.prom");
        write_textfile(&path, "a 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 1\n");
        write_textfile(&path, "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b 2\n");
        // Only the target is left: no temporary behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cotyledon.prom")]);
        // A missing directory is an error naming the path, and leaves nothing.
        let err = write_textfile(&dir.join("nope/x.prom"), "").unwrap_err();
        assert!(err.to_string().contains("nope/x.prom"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
