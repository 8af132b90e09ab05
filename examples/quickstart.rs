//! The quickstart: two workers of a service that logs its life.
//!
//! Run it with `cargo run --example quickstart`, then press Ctrl-C (fast
//! exit), or from another terminal send SIGHUP (reload) or SIGTERM
//! (graceful stop) to the master's pid. A SIGHUP is refused while the
//! file named by `QUICKSTART_CONFIG` (if set) is missing: the workers then
//! keep running untouched.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cotyledon::{Service, ServiceManager, ServiceResult, WorkerId, WorkerIdentity};
use log::{debug, info};

const NAME: &str = "my_example_service";

struct MyService {
    worker_id: WorkerId,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl MyService {
    /// The factory: runs in the new worker, after the fork (build threads
    /// or an async runtime here, never in the master).
    fn new(me: &WorkerIdentity) -> Self {
        let worker_id = me.worker_id;
        info!(target: "quickstart", "[{}] {} worker {worker_id} init", std::process::id(), me.service_name);
        MyService {
            worker_id,
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        }
    }
}

impl Service for MyService {
    fn run(&self) -> ServiceResult {
        let pid = std::process::id();
        info!(target: "quickstart", "[{pid}] {NAME} worker {} running...", self.worker_id);
        let mut stopped = self.stopped.lock().unwrap();
        while !*stopped {
            debug!(target: "quickstart", "[{pid}] {NAME} worker {} working...", self.worker_id);
            stopped = self
                .wake
                .wait_timeout(stopped, Duration::from_secs(1))
                .unwrap()
                .0;
        }
        Ok(())
    }

    fn terminate(&self) -> ServiceResult {
        info!(target: "quickstart", "[{}] {NAME} worker {} terminating...", std::process::id(), self.worker_id);
        *self.stopped.lock().unwrap() = true;
        self.wake.notify_all();
        Ok(())
    }

    fn reload(&self) -> ServiceResult {
        info!(target: "quickstart", "[{}] {NAME} worker {} reloading...", std::process::id(), self.worker_id);
        Ok(())
    }
}

fn main() -> Result<(), cotyledon::Error> {
    cotyledon::logging::init_stderr(log::LevelFilter::Info);
    info!(target: "quickstart", "Starting Cotyledon Service Manager");
    let mut manager = ServiceManager::new()?;
    manager.add(NAME, 2, |me| Ok(MyService::new(me)))?;
    // Hooks get service ids; the handle maps them to names.
    let handle = manager.handle();
    manager.on_dead_worker(move |service, worker, status| {
        let name = handle.service_name(service).unwrap_or_default();
        info!(target: "quickstart", "{name} worker {worker} ended with status {status}");
        Ok(())
    });
    // A reload check can refuse a reload: the workers then get no SIGHUP.
    manager.on_reload_check(|| {
        if let Some(path) = std::env::var_os("QUICKSTART_CONFIG") {
            std::fs::metadata(&path)
                .map_err(|e| format!("cannot use {}: {e}", path.to_string_lossy()))?;
        }
        Ok(())
    });
    manager.run()?;
    info!(target: "quickstart", "Cotyledon Service Manager stopped.");
    Ok(())
}
