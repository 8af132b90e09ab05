//! The benchmark application, Rust face: the same behaviour and the same
//! configuration as `benches/app.py` (see there), on the `cotyledon` crate.
//!
//! Built by `benches/run.sh` with `cargo build --release --example bench_app`.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use cotyledon::{Service, ServiceManager, ServiceResult, Settings, WorkerId};

struct Reporter {
    wid: WorkerId,
    pid: u32,
    sock: Option<UnixDatagram>,
    path: String,
}

impl Reporter {
    fn new(wid: WorkerId, path: &str) -> Self {
        Reporter {
            wid,
            pid: std::process::id(),
            sock: UnixDatagram::unbound().ok(),
            path: path.to_owned(),
        }
    }

    fn send(&self, event: &str) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let ns = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let msg = format!("{event} {} {} {ns}", self.wid, self.pid);
        if let Some(sock) = &self.sock {
            let _ = sock.send_to(msg.as_bytes(), &self.path);
        }
    }
}

struct Bench {
    reporter: Reporter,
    reload: bool,
}

impl Service for Bench {
    fn run(&self) -> ServiceResult {
        self.reporter.send("run");
        Ok(())
    }

    fn terminate(&self) -> ServiceResult {
        self.reporter.send("term");
        Ok(())
    }

    fn reload(&self) -> ServiceResult {
        if self.reload {
            self.reporter.send("reload");
        } else {
            cotyledon::restart_worker();
        }
        Ok(())
    }
}

fn main() -> Result<(), cotyledon::Error> {
    let sock = std::env::var("BENCH_SOCK").expect("BENCH_SOCK");
    let workers: i64 = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let wait = std::env::var("BENCH_WAIT_INTERVAL").unwrap_or_else(|_| "default".into());
    let reload = std::env::var("BENCH_RELOAD").map_or(true, |v| v == "1");

    let mut settings = Settings::default();
    if wait != "default" {
        let secs: f64 = wait.parse().expect("BENCH_WAIT_INTERVAL");
        settings.wait_interval = Duration::from_secs_f64(secs);
    }
    let mut manager = ServiceManager::with_settings(settings)?;
    manager.add("bench", workers, move |me| {
        let reporter = Reporter::new(me.worker_id, &sock);
        reporter.send("init");
        Ok(Bench { reporter, reload })
    })?;
    manager.run()
}
