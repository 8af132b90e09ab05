//! What a running master says about itself: one schema for every face.
//!
//! [`Status`] is built by the master's state machine; Rust users get it as
//! these structs (`ManagerHandle::status()`, coming with the new master),
//! the control socket and the C face as JSON (`serde`), the Python face as
//! typed objects. Times are wall-clock seconds since the Unix epoch.
//! The same counters feed the Prometheus metrics ([`crate::metrics`]).

use serde::{Deserialize, Serialize};

/// The version of the status schema and of the control protocol. Bumped
/// when a field changes meaning or goes away (new fields do not bump it).
pub const PROTOCOL_VERSION: u32 = 1;

/// What the master is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerState {
    /// `run()` started and not every wanted worker was forked yet.
    Starting,
    /// Supervising.
    Running,
    /// Running the reload hooks and signalling the workers.
    Reloading,
    /// Graceful stop (or fast exit) under way.
    Stopping,
}

/// How a worker id's last process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LastExit {
    /// It exited with this status.
    Exit {
        /// The exit status.
        code: i32,
    },
    /// A signal ended it.
    Signal {
        /// The signal number.
        signal: i32,
        /// Its name, as `kill -l` spells it (`SIGKILL`).
        name: String,
    },
    /// The master's own deadline ended it (graceful stop timeout).
    Deadline {
        /// The signal the master sent.
        signal: i32,
        /// Its name.
        name: String,
    },
    /// Another waiter (an application's `waitpid(-1)`) took its status.
    Lost,
}

/// One worker id of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker id (0 .. wanted count; higher while a stopping worker
    /// still runs).
    pub worker_id: usize,
    /// The running process, if any (none while its respawn waits).
    pub pid: Option<i32>,
    /// When that process was forked (Unix seconds).
    pub started_at: Option<f64>,
    /// How many times this id was forked again after its first start.
    pub restarts: u64,
    /// How this id's previous process ended, if one did.
    pub last_exit: Option<LastExit>,
    /// SIGTERM was sent to it (its id went above the count, a restart
    /// command, or the master is stopping).
    pub stopping: bool,
    /// Its service's restart policy does not start it again
    /// ([`Restart`](crate::Restart) `on-failure` after a clean exit, or
    /// `never`).
    #[serde(default)]
    pub finished: bool,
    /// While its backoff holds its respawn back: when it is due (Unix
    /// seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<f64>,
    /// Its exits that failed and counted for the restart policy (not those
    /// the engine caused).
    #[serde(default)]
    pub failures: u64,
    /// Its previous process exited to restart: it announced it (the
    /// default [`Service::reload`](crate::Service::reload),
    /// [`restart_worker`](crate::restart_worker),
    /// [`announce_restart`](crate::announce_restart)). Such an exit shows
    /// in `on_dead_worker` as an ordinary exit (status 0 for the default
    /// reload); a dead-worker hook that must tell it apart reads this from
    /// [`ManagerHandle::status`](crate::ManagerHandle::status), which is up
    /// to date when the hook runs. Omitted from the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
}

/// Counters of one service since `run()` started (Prometheus counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Workers forked.
    pub starts: u64,
    /// Workers that exited with status 0.
    pub exits_clean: u64,
    /// Workers that exited with a nonzero status (or whose status was lost).
    pub exits_error: u64,
    /// Workers ended by a signal.
    pub exits_signal: u64,
    /// Forks that replaced a worker id that had run before.
    pub restarts: u64,
    /// Forks of this service that the fork-rate limiter held back.
    pub limiter_waits: u64,
    /// Reloads (SIGHUP or command) that reached this service's workers.
    pub reloads: u64,
    /// Exits that failed and counted for the restart policy (nonzero
    /// status, signal or lost status, not caused by the engine).
    #[serde(default)]
    pub failures: u64,
    /// Respawns the service's backoff held back.
    #[serde(default)]
    pub backoff_waits: u64,
}

/// A service's restart policy (see [`ServicePolicy`](crate::ServicePolicy)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// `always`, `on-failure` or `never`.
    pub restart: String,
    /// The manager stops once the service has no worker left.
    pub stop_on_exit: bool,
    /// The backoff, if the service has one (then the fork-rate limiter
    /// does not govern it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffStatus>,
    /// The give-up rule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up: Option<GiveUpStatus>,
}

impl Default for PolicyStatus {
    fn default() -> Self {
        PolicyStatus {
            restart: "always".into(),
            stop_on_exit: false,
            backoff: None,
            give_up: None,
        }
    }
}

/// A backoff, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackoffStatus {
    /// The first wait.
    pub base: f64,
    /// The longest wait.
    pub max: f64,
    /// The random part of each wait.
    pub jitter: f64,
    /// The run time that resets the count.
    pub stable: f64,
}

/// A give-up rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GiveUpStatus {
    /// How many failures.
    pub failures: u32,
    /// Within how many seconds.
    pub window: f64,
}

/// A restart policy stopped the manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopStatus {
    /// The exit status `run()` gives back.
    pub status: i32,
    /// Why, as logged (`Service api gave up: 5 failures within 60s`).
    pub reason: String,
}

/// One service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's id (what `add` returned).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The face's own id of the service, when it has one (the Python
    /// face's `uuid.UUID`, as text; see
    /// [`bindings::add_with_key`](crate::bindings::add_with_key)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The worker count it is configured with (0 or less: none).
    pub workers: i64,
    /// How many of its workers run now.
    pub running: usize,
    /// Each wanted worker id, then any stopping worker above the count.
    pub worker_list: Vec<WorkerStatus>,
    /// Its counters.
    pub counters: Counters,
    /// Its restart policy.
    #[serde(default)]
    pub policy: PolicyStatus,
}

/// The fork-rate limiter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimiterStatus {
    /// Whether a fork is held back ("Forking too fast").
    pub waiting: bool,
    /// Until when (Unix seconds), while waiting.
    pub until: Option<f64>,
}

/// The whole picture of a running master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The master's pid.
    pub pid: i32,
    /// What the master is doing.
    pub state: ManagerState,
    /// When `run()` started (Unix seconds).
    pub started_at: f64,
    /// The services, in the order they were added.
    pub services: Vec<ServiceStatus>,
    /// The fork-rate limiter.
    pub limiter: LimiterStatus,
    /// The pid of the init the manager split off at creation (the master's
    /// parent; see [`InitMode`](crate::InitMode)), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<i32>,
    /// Set once a service's restart policy stopped the manager (stop on
    /// exit, give-up): why, and the status `run()` gives back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StopStatus>,
}

impl Status {
    /// Whether every wanted worker runs and the master is neither stopping
    /// nor held back by the limiter (`cotyledon-ctl status --check`).
    pub fn healthy(&self) -> bool {
        self.state != ManagerState::Stopping
            && !self.limiter.waiting
            && self.services.iter().all(|s| {
                let wanted = s.workers.max(0) as usize;
                // A finished id is done, not missing.
                (0..wanted).all(|id| {
                    s.worker_list.iter().any(|w| {
                        w.worker_id == id && (w.finished || (w.pid.is_some() && !w.stopping))
                    })
                })
            })
    }
}
