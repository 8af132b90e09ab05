//! The manager's settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::title::TitleMode;
use crate::InitMode;

/// The manager's settings; `Settings::default()` gives Cotyledon's defaults.
///
/// The struct is `#[non_exhaustive]`: start from the default and change
/// fields.
///
/// ```
/// use std::time::Duration;
/// use cotyledon::{ServiceManager, Settings, TitleMode};
///
/// let mut settings = Settings::default();
/// assert_eq!(settings.graceful_shutdown_timeout, Duration::from_secs(60));
/// settings.graceful_shutdown_timeout = Duration::from_secs(5);
/// settings.titles = TitleMode::Off;
/// settings.single_instance = false;
/// settings.session_leader = false;
/// let manager = ServiceManager::with_settings(settings)?;
/// assert_eq!(manager.handle().graceful_shutdown_timeout(), Duration::from_secs(5));
/// # Ok::<(), cotyledon::Error>(())
/// ```
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
    ///
    /// The master's own deadline covers its terminate hooks from its
    /// SIGTERM, then the workers from theirs plus one second: a worker's
    /// own timeout (this one, by default) ends a hung `terminate()` first,
    /// and the stop still succeeds, as Cotyledon's does. A service whose
    /// own timeout is longer than this one is cut short by the master's
    /// deadline (SIGINT, then SIGKILL after [`kill_grace`](Self::kill_grace)).
    ///
    /// Past it the master logs `Graceful shutdown timeout exceeded, ...`,
    /// sends SIGINT to its process group, and [`kill_grace`](Self::kill_grace)
    /// later kills what is left. With `ZERO` there is no deadline and so no
    /// escalation: the master waits as long as its workers (and what they
    /// started in its process group) take.
    pub graceful_shutdown_timeout: Duration,
    /// How long after its SIGINT (on SIGINT, or past the graceful
    /// deadline) the master sends SIGKILL to the workers still alive,
    /// every process they started, and the rest of its process group;
    /// it reaps them before `run()` ends (default 500 ms). Also how long,
    /// after the workers of a graceful stop are gone, what they left in
    /// the process group has after its SIGTERM before SIGKILL: a child that
    /// inherited a handler (or ignores SIGTERM) cannot hold the stop.
    pub kill_grace: Duration,
    /// Refuse a second manager while one is alive (default true).
    pub single_instance: bool,
    /// Become a session leader at creation, when possible (default true):
    /// the master and its workers then form a process group of their own,
    /// which the master signals and waits for as a whole at its end.
    pub session_leader: bool,
    /// Except in the foreground of a terminal (default true): a master
    /// started there, e.g. by a script under a pty, stays in the
    /// terminal's foreground process group, so that Ctrl-C reaches it
    /// (and its workers) and it does not outlive its terminal. The Python
    /// face sets it false: Cotyledon always calls `setsid()`.
    pub keep_terminal: bool,
    /// How process titles are set (default [`TitleMode::Comm`]).
    pub titles: TitleMode,
    /// Send `READY=1` to systemd when `run()` starts (default true).
    pub notify_systemd: bool,
    /// Serve the control socket at this path while `run()` runs (default
    /// none; `COTYLEDON_CONTROL_SOCKET` sets it when this is `None`).
    /// See [`crate::control`] for the protocol and `cotyledon-ctl`.
    pub control_socket: Option<PathBuf>,
    /// Write the Prometheus metrics to this file every
    /// [`metrics_interval`](Self::metrics_interval), atomically, for
    /// node_exporter's textfile collector (default none;
    /// `COTYLEDON_METRICS_FILE` sets it when this is `None`).
    pub metrics_file: Option<PathBuf>,
    /// How often the metrics file is written (default 15 s).
    pub metrics_interval: Duration,
    /// Whether the manager splits off a minimal init at creation, to reap
    /// orphans when it runs as PID 1 in a container (default
    /// [`InitMode::Auto`]: only when PID 1; `COTYLEDON_INIT` decides when
    /// this is `Auto`). See [`InitMode`].
    pub init: InitMode,
}

/// The environment variable that enables the control socket for a program
/// that does not (an unmodified application).
pub const CONTROL_SOCKET_ENV: &str = "COTYLEDON_CONTROL_SOCKET";
/// The environment variable that enables the metrics file.
pub const METRICS_FILE_ENV: &str = "COTYLEDON_METRICS_FILE";

impl Settings {
    /// The control socket's path: the setting, else the environment's.
    pub(crate) fn control_socket_path(&self) -> Option<PathBuf> {
        self.control_socket
            .clone()
            .or_else(|| env_path(CONTROL_SOCKET_ENV))
    }

    /// The metrics file's path: the setting, else the environment's.
    pub(crate) fn metrics_file_path(&self) -> Option<PathBuf> {
        self.metrics_file
            .clone()
            .or_else(|| env_path(METRICS_FILE_ENV))
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait_interval: Duration::from_millis(10),
            graceful_shutdown_timeout: Duration::from_secs(60),
            kill_grace: super::machine::FAST_EXIT_GRACE,
            single_instance: true,
            session_leader: true,
            keep_terminal: true,
            titles: TitleMode::Comm,
            notify_systemd: true,
            control_socket: None,
            metrics_file: None,
            metrics_interval: Duration::from_secs(15),
            init: InitMode::Auto,
        }
    }
}
