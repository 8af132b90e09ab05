//! The manager's settings.

use std::time::Duration;

use crate::title::TitleMode;

/// The manager's settings; `Settings::default()` gives Cotyledon's defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Time between two forks (default 10 ms): workers started together are
    /// spread out by it; a fork long after the previous one (a lone
    /// respawn) is not delayed.
    pub wait_interval: Duration,
    /// How long a graceful shutdown may take, for the master and for each
    /// worker's `terminate()` (default 60 s; `ZERO` waits forever). A
    /// service overrides it for its workers with
    /// [`Service::graceful_shutdown_timeout`](crate::Service::graceful_shutdown_timeout).
    pub graceful_shutdown_timeout: Duration,
    /// Refuse a second manager while one is alive (default true).
    pub single_instance: bool,
    /// Become a session leader at creation, when possible (default true).
    pub session_leader: bool,
    /// How process titles are set (default [`TitleMode::Comm`]).
    pub titles: TitleMode,
    /// Send `READY=1` to systemd when `run()` starts (default true).
    pub notify_systemd: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait_interval: Duration::from_millis(10),
            graceful_shutdown_timeout: Duration::from_secs(60),
            single_instance: true,
            session_leader: true,
            titles: TitleMode::Comm,
            notify_systemd: true,
        }
    }
}
