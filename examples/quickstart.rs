//! The quickstart: two workers of a service that logs its life.
//!
//! Run it with `cargo run --example quickstart`, then press Ctrl-C (fast
//! exit), or from another terminal send SIGHUP (reload) or SIGTERM
//! (graceful stop) to the master's pid.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cotyledon::{Service, ServiceManager, ServiceResult, WorkerId};
use log::{debug, info};

const NAME: &str = "my_example_service";

struct MyService {
    worker_id: WorkerId,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl MyService {
    fn new(worker_id: WorkerId) -> Self {
        info!(target: "quickstart", "[{}] {NAME} worker {worker_id} init", std::process::id());
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
    manager.add(NAME, 2, |worker_id| Ok(MyService::new(worker_id)))?;
    manager.run()?;
    info!(target: "quickstart", "Cotyledon Service Manager stopped.");
    Ok(())
}
