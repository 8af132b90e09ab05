//! # cotyledon
//!
//! A supervised master/worker process engine, the Rust core of the
//! Cotyledon service framework. A master process forks N workers per
//! service, respawns them with the same worker id when they die (with a
//! fork-rate limit), turns SIGTERM / SIGINT / SIGHUP into graceful stop /
//! fast exit / reload, tells systemd it is ready, and runs hooks.
//!
//! A program's `main` (`no_run`: it supervises until SIGTERM; the
//! [`ServiceManager`] docs have a whole run that does run):
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use cotyledon::{Service, ServiceManager, ServiceResult, WorkerId};
//!
//! struct Worker { id: WorkerId, stop: AtomicBool }
//!
//! impl Service for Worker {
//!     fn run(&self) -> ServiceResult {
//!         while !self.stop.load(Ordering::Relaxed) {
//!             println!("worker {} working", self.id);
//!             std::thread::sleep(Duration::from_secs(1));
//!         }
//!         Ok(())
//!     }
//!     fn terminate(&self) -> ServiceResult {
//!         self.stop.store(true, Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), cotyledon::Error> {
//!     let mut manager = ServiceManager::new()?;
//!     // The factory runs in each worker, after the fork.
//!     manager.add("worker", 2, |me| Ok(Worker { id: me.worker_id, stop: AtomicBool::new(false) }))?;
//!     manager.run()
//! }
//! ```
//!
//! Service methods, the factory and hooks share one error type,
//! [`AppError`] (`?` on any error); a worker knows who it is through its
//! factory's [`WorkerIdentity`] and [`current_worker`]; a reload check
//! ([`ServiceManager::on_reload_check`]) can refuse a reload.
//!
//! A service's workers may also run in a new program (a language face's
//! fresh interpreter, Python's `spawn`): the engine still forks them at its
//! one fork site, the child `exec`s, and the program enters the same worker
//! protocol ([`ServiceManager::set_exec`], [`ServiceManager::run_worker`],
//! [`WorkerHandover`]).
//!
//! Log records go through the [`log`] crate with the targets
//! `cotyledon._service_manager` (master) and `cotyledon._service_worker`
//! (workers), with Cotyledon's texts and levels.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bindings;
pub mod control;
pub mod ctl;
mod error;
mod hooks;
mod init;
pub mod logging;
mod master;
pub mod metrics;
mod notify;
pub mod policy;
mod service;
mod signals;
pub mod status;
// The only module allowed `unsafe`: each use behind a small safe function.
#[allow(unsafe_code)]
mod sys;
mod title;
mod worker;

pub use error::Error;
pub use hooks::{HookError, HookResult};
pub use init::{InitMode, INIT_ENV};
pub use master::{
    ManagerHandle, ServiceManager, Settings, WorkerHandover, CONTROL_SOCKET_ENV, LOST_STATUS,
    MAX_WORKERS, METRICS_FILE_ENV,
};
pub use notify::{sd_notify, SYSTEMD_VARS};
pub use policy::{Backoff, GiveUp, Restart, ServicePolicy, GIVE_UP_STATUS};
pub use service::{
    AppError, Service, ServiceExit, ServiceId, ServiceResult, WorkerId, WorkerIdentity,
};
pub use signals::signal_name;
pub use title::TitleMode;
pub use worker::{announce_restart, current_worker, restart_worker};

/// The README's Rust examples compile (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
