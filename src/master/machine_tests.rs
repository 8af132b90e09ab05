//! The machine without processes: every (state, event) pair with its exact
//! actions, the contract's sequences step by step, the state × event table
//! of `docs/master-state-machine.md`, and properties over random event
//! sequences fed the way `run_loop.rs` feeds them.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

// ---- vocabulary -----------------------------------------------------------

const S: ServiceId = ServiceId(0);
const WAIT: Duration = Duration::from_millis(10);
const GRACEFUL: Duration = Duration::from_secs(60);
const TERM: i32 = libc::SIGTERM;
const INT: i32 = libc::SIGINT;
const HUP: i32 = libc::SIGHUP;

const TERM_LOG: &str = "Caught SIGTERM signal, graceful exiting of master process";
/// A `shutdown()` of the Rust or C face says it was one.
const STOP_LOG: &str = "Shutdown requested, graceful exiting of master process";
const INT_LOG: &str = "Caught SIGINT signal, instantaneous exiting";
const DEADLINE_LOG: &str =
    "Graceful shutdown timeout exceeded, instantaneous exiting of master process";
const KILLING: &str = "Killing services with signal SIGTERM";
const WAITING: &str = "Waiting services to terminate";
const FINISH: &str = "Shutdown finish";
const TOO_FAST: &str = "Forking too fast, sleeping";
const REFUSED: &str = "Reload refused by a reload check: bad config";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn info(text: &str) -> Action {
    log(Level::Info, text.to_string())
}

fn debug(text: &str) -> Action {
    log(Level::Debug, text.to_string())
}

fn error(text: &str) -> Action {
    log(Level::Error, text.to_string())
}

fn kill(pids: &[i32], sig: i32) -> Action {
    Action::Signal {
        pids: pids.to_vec(),
        sig,
    }
}

fn killpg(sig: i32) -> Action {
    Action::SignalGroup { sig }
}

fn fork(worker: WorkerId) -> Action {
    Action::Fork { service: S, worker }
}

fn hooks(kind: HookKind) -> Action {
    Action::RunHooks(kind)
}

fn dead(worker: WorkerId, code: i32) -> Action {
    Action::DeadWorkerHooks {
        service: S,
        worker,
        code,
    }
}

fn exit(ending: Ending) -> Action {
    Action::Exit(ending)
}

fn start(group_leader: bool, notify: bool) -> Event {
    Event::Start {
        group_leader,
        notify,
        watchdog: None,
    }
}

fn notify(notices: &[Notice]) -> Action {
    Action::Notify(notices.to_vec())
}

fn status(text: &str) -> Notice {
    Notice::Status(text.to_string())
}

/// What a master of the table's one service of 2 tells systemd at start.
fn notify_ready() -> Action {
    notify(&[Notice::Ready, status("svc: 0/2 workers")])
}

fn forked(pid: i32) -> Event {
    Event::Forked { pid }
}

fn exited(pid: i32, exit: Exit) -> Event {
    Event::ChildExited { pid, exit }
}

fn scale(workers: i64) -> Event {
    Event::Command(Command::Scale {
        service: S,
        workers,
    })
}

use HookKind::{Reload as RELOAD, Terminate as TERMINATE};

// ---- a machine at a time --------------------------------------------------

/// A machine and the clock it is stepped with (`now`, as an offset of
/// `t0` in the summaries).
struct H {
    m: Machine,
    t0: Instant,
    now: Instant,
}

impl H {
    fn new(t0: Instant, workers: i64) -> H {
        let mut m = Machine::new(WAIT, GRACEFUL);
        m.add_service(S, "svc".into(), None, workers);
        H { m, t0, now: t0 }
    }

    fn at(&mut self, offset_ms: u64) -> &mut Self {
        self.now = self.t0 + ms(offset_ms);
        self
    }

    fn step(&mut self, event: Event) -> Vec<Action> {
        self.m.step(event, self.now)
    }

    /// The armed timer as an offset of `t0`, in ms.
    fn deadline_ms(&self) -> Option<u128> {
        self.m.deadline().map(|d| (d - self.t0).as_millis())
    }

    fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.m.pids().collect();
        pids.sort_unstable();
        pids
    }

    /// One line of what the queries say: the phase, `state()`, whether
    /// running and stopping, the armed timer (ms after `t0`), `pids()`,
    /// the count of the service and the graceful timeout.
    fn summary(&self) -> String {
        let m = &self.m;
        format!(
            "{} {:?}{}{}{} d={} p={:?} w={} T={}s",
            phase_name(m),
            m.state(),
            if m.is_running() { " running" } else { "" },
            if m.stopping() { " stopping" } else { "" },
            if m.forking.is_some() { " forking" } else { "" },
            self.deadline_ms()
                .map_or("-".to_string(), |d| d.to_string()),
            self.pids(),
            m.workers_of(S).unwrap_or(0),
            m.graceful_timeout().as_secs(),
        )
    }
}

fn phase_name(m: &Machine) -> &'static str {
    match m.phase {
        Phase::Ready { stop_asked: None } => "Ready",
        Phase::Ready {
            stop_asked: Some(_),
        } => "Ready(stop-asked)",
        Phase::Supervising {
            reloading: true, ..
        } => "Reloading",
        Phase::Supervising { starting: true, .. } => "Starting",
        Phase::Supervising { .. } => "Running",
        Phase::Stopping {
            draining: Some(_), ..
        } => "Stopping(group)",
        Phase::Stopping {
            interrupted: true, ..
        } => "Stopping(interrupted)",
        Phase::Stopping {
            hooks_done: false, ..
        } => "Stopping(hooks)",
        Phase::Stopping { .. } => "Stopping(wait)",
        Phase::FastExit { killed: true, .. } => "FastExit(killed)",
        Phase::FastExit {
            by_deadline: false, ..
        } => "FastExit",
        Phase::FastExit { .. } => "FastExit(deadline)",
        Phase::Done => "Done",
    }
}

// ---- the states, each driven from a fresh machine --------------------------
//
// One service of 2 workers, wait_interval 10 ms, graceful timeout 60 s, not
// the group leader. Worker 0 is pid 100, worker 1 pid 101.

fn ready(t0: Instant) -> H {
    H::new(t0, 2)
}

fn ready_stop_asked(t0: Instant) -> H {
    let mut h = ready(t0);
    assert_eq!(
        h.step(Event::Command(Command::Stop(StopCause::Requested))),
        vec![]
    );
    h
}

/// Worker 0 forked at 0, worker 1 due at 10 ms (`now` = 0).
fn starting(t0: Instant) -> H {
    let mut h = ready(t0);
    assert_eq!(h.step(start(false, false)), vec![]);
    assert_eq!(h.deadline_ms(), Some(0), "the first fork goes at once");
    assert_eq!(h.step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.deadline_ms(), None, "no timer while a fork is under way");
    assert_eq!(h.step(forked(100)), vec![]);
    h
}

/// Starting, the fork of worker 1 asked at 10 ms and not reported yet.
fn starting_forking(t0: Instant) -> H {
    let mut h = starting(t0);
    assert_eq!(h.at(10).step(Event::Timer), vec![fork(1)]);
    h
}

/// Both workers run (`now` = 10 ms).
fn running(t0: Instant) -> H {
    let mut h = starting_forking(t0);
    assert_eq!(h.step(forked(101)), vec![]);
    h
}

fn reloading(t0: Instant) -> H {
    let mut h = running(t0);
    assert_eq!(h.step(Event::Signal(Sig::Hup)), vec![hooks(RELOAD)]);
    h
}

fn stopping_hooks(t0: Instant) -> H {
    let mut h = running(t0);
    assert_eq!(
        h.step(Event::Signal(Sig::Term)),
        vec![info(TERM_LOG), hooks(TERMINATE)]
    );
    h
}

fn stopping_wait(t0: Instant) -> H {
    let mut h = stopping_hooks(t0);
    assert_eq!(
        h.step(Event::HooksDone(TERMINATE)),
        vec![debug(KILLING), kill(&[100, 101], TERM), debug(WAITING)]
    );
    h
}

fn stopping_interrupted(t0: Instant) -> H {
    let mut h = running(t0);
    assert_eq!(h.step(Event::Interrupted), vec![kill(&[100, 101], TERM)]);
    h
}

fn fast_exit(t0: Instant) -> H {
    let mut h = running(t0);
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![info(INT_LOG), kill(&[100, 101], INT)]
    );
    h
}

/// The group leader's graceful stop, workers gone, waiting for the rest
/// of its process group.
fn stopping_draining(t0: Instant) -> H {
    let mut h = running(t0);
    h.m.group_leader = true;
    h.step(Event::Signal(Sig::Term));
    h.step(Event::HooksDone(TERMINATE));
    assert_eq!(h.step(exited(100, Exit::Code(0))), vec![]);
    assert_eq!(
        h.step(exited(101, Exit::Code(0))),
        vec![killpg(TERM), Action::WatchGroup]
    );
    h
}

/// The group leader's fast exit: the group got SIGINT (it is watched
/// once the workers are gone).
fn fast_exit_group(t0: Instant) -> H {
    let mut h = running(t0);
    h.m.group_leader = true;
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![info(INT_LOG), killpg(INT)]
    );
    h
}

/// The workers outlived the grace and got SIGKILL (`now` = 510 ms).
fn fast_exit_killed(t0: Instant) -> H {
    let mut h = fast_exit(t0);
    assert_eq!(
        h.at(510).step(Event::Timer),
        vec![
            info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 100, 101"),
            Action::Kill {
                pids: vec![100, 101]
            }
        ]
    );
    h
}

fn done(t0: Instant) -> H {
    let mut h = stopping_wait(t0);
    assert_eq!(h.step(exited(100, Exit::Code(0))), vec![]);
    assert_eq!(
        h.step(exited(101, Exit::Code(0))),
        vec![debug(FINISH), exit(Ending::Graceful)]
    );
    h
}

/// The states of the table, each with the helper that builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Ready,
    ReadyStopAsked,
    Starting,
    StartingForking,
    Running,
    Reloading,
    StoppingHooks,
    StoppingWait,
    StoppingInterrupted,
    StoppingDraining,
    FastExit,
    FastExitGroup,
    FastExitKilled,
    Done,
}

impl St {
    const ALL: [St; 14] = [
        St::Ready,
        St::ReadyStopAsked,
        St::Starting,
        St::StartingForking,
        St::Running,
        St::Reloading,
        St::StoppingHooks,
        St::StoppingWait,
        St::StoppingInterrupted,
        St::StoppingDraining,
        St::FastExit,
        St::FastExitGroup,
        St::FastExitKilled,
        St::Done,
    ];

    fn name(self) -> &'static str {
        match self {
            St::Ready => "Ready",
            St::ReadyStopAsked => "Ready, stop asked",
            St::Starting => "Supervising, starting",
            St::StartingForking => "Supervising, starting, fork under way",
            St::Running => "Supervising, running",
            St::Reloading => "Supervising, reloading",
            St::StoppingHooks => "Stopping, terminate hooks running",
            St::StoppingWait => "Stopping, waiting for workers",
            St::StoppingInterrupted => "Stopping, interrupted",
            St::StoppingDraining => "Stopping, waiting for the process group",
            St::FastExit => "FastExit",
            St::FastExitGroup => "FastExit, group leader",
            St::FastExitKilled => "FastExit, SIGKILL sent",
            St::Done => "Done",
        }
    }

    fn build(self, t0: Instant) -> H {
        match self {
            St::Ready => ready(t0),
            St::ReadyStopAsked => ready_stop_asked(t0),
            St::Starting => starting(t0),
            St::StartingForking => starting_forking(t0),
            St::Running => running(t0),
            St::Reloading => reloading(t0),
            St::StoppingHooks => stopping_hooks(t0),
            St::StoppingWait => stopping_wait(t0),
            St::StoppingInterrupted => stopping_interrupted(t0),
            St::StoppingDraining => stopping_draining(t0),
            St::FastExit => fast_exit(t0),
            St::FastExitGroup => fast_exit_group(t0),
            St::FastExitKilled => fast_exit_killed(t0),
            St::Done => done(t0),
        }
    }
}

// ---- the events -------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Start,
    Term,
    Int,
    Hup,
    Chld,
    ExitWorker,
    ExitUnknown,
    Forked,
    ForkFailed,
    HooksTerminate,
    HooksReload,
    TimerEarly,
    TimerDue,
    ScaleUp,
    ScaleDown,
    ResetLimiter,
    Reload,
    Restart,
    Stop,
    SetGracefulTimeout,
    Interrupted,
    GroupGone,
    Announced,
    Refused,
}

impl Ev {
    const ALL: [Ev; 24] = [
        Ev::Start,
        Ev::Term,
        Ev::Int,
        Ev::Hup,
        Ev::Chld,
        Ev::ExitWorker,
        Ev::ExitUnknown,
        Ev::Forked,
        Ev::ForkFailed,
        Ev::HooksTerminate,
        Ev::HooksReload,
        Ev::TimerEarly,
        Ev::TimerDue,
        Ev::ScaleUp,
        Ev::ScaleDown,
        Ev::ResetLimiter,
        Ev::Reload,
        Ev::Restart,
        Ev::Stop,
        Ev::SetGracefulTimeout,
        Ev::Interrupted,
        Ev::GroupGone,
        Ev::Announced,
        Ev::Refused,
    ];

    fn name(self) -> &'static str {
        match self {
            Ev::Start => "Start",
            Ev::Term => "SIGTERM",
            Ev::Int => "SIGINT",
            Ev::Hup => "SIGHUP",
            Ev::Chld => "SIGCHLD",
            Ev::ExitWorker => "ChildExited(worker)",
            Ev::ExitUnknown => "ChildExited(unknown)",
            Ev::Forked => "Forked",
            Ev::ForkFailed => "ForkFailed",
            Ev::HooksTerminate => "HooksDone(terminate)",
            Ev::HooksReload => "HooksDone(reload)",
            Ev::TimerEarly => "Timer(early)",
            Ev::TimerDue => "Timer(due)",
            Ev::ScaleUp => "Scale(3)",
            Ev::ScaleDown => "Scale(1)",
            Ev::ResetLimiter => "ResetLimiter",
            Ev::Reload => "Reload",
            Ev::Restart => "Restart(0)",
            Ev::Stop => "Stop",
            Ev::SetGracefulTimeout => "SetGracefulTimeout(5s)",
            Ev::Interrupted => "Interrupted",
            Ev::GroupGone => "GroupGone",
            Ev::Announced => "RestartAnnounced(worker)",
            Ev::Refused => "ReloadRefused",
        }
    }

    /// The event and when it happens: at the state's `now`, but
    /// `Timer(due)` comes at the armed deadline (an hour later when none
    /// is armed) and `Timer(early)` at `now`, before any armed deadline.
    fn event(self, h: &H) -> (Event, Instant) {
        let now = h.now;
        let e = match self {
            Ev::Start => start(false, true),
            Ev::Term => Event::Signal(Sig::Term),
            Ev::Int => Event::Signal(Sig::Int),
            Ev::Hup => Event::Signal(Sig::Hup),
            Ev::Chld => Event::Signal(Sig::Chld),
            Ev::ExitWorker => exited(100, Exit::Code(3)),
            Ev::ExitUnknown => exited(999, Exit::Code(0)),
            Ev::Forked => forked(200),
            Ev::ForkFailed => Event::ForkFailed {
                error: "EAGAIN".into(),
            },
            Ev::HooksTerminate => Event::HooksDone(TERMINATE),
            Ev::HooksReload => Event::HooksDone(RELOAD),
            Ev::TimerEarly => {
                assert!(h.m.deadline().map_or(true, |d| d > now));
                Event::Timer
            }
            Ev::TimerDue => {
                let at = h.m.deadline().unwrap_or(now + Duration::from_secs(3600));
                return (Event::Timer, at);
            }
            Ev::ScaleUp => scale(3),
            Ev::ScaleDown => scale(1),
            Ev::ResetLimiter => Event::Command(Command::ResetLimiter),
            Ev::Reload => Event::Command(Command::Reload),
            Ev::Restart => Event::Command(Command::Restart {
                service: S,
                worker: 0,
            }),
            Ev::Stop => Event::Command(Command::Stop(StopCause::Requested)),
            Ev::SetGracefulTimeout => {
                Event::Command(Command::SetGracefulTimeout(Duration::from_secs(5)))
            }
            Ev::Interrupted => Event::Interrupted,
            Ev::GroupGone => Event::GroupGone,
            Ev::Announced => Event::RestartAnnounced { pid: 100 },
            Ev::Refused => Event::ReloadRefused {
                reason: "bad config".into(),
            },
        };
        (e, now)
    }
}

/// Builds the state, steps the event; returns the machine before and after
/// and the actions.
fn run_cell(st: St, ev: Ev, t0: Instant) -> (String, H, Vec<Action>) {
    let mut h = st.build(t0);
    let before = h.summary();
    let (event, at) = ev.event(&h);
    h.now = at;
    let actions = h.step(event);
    (before, h, actions)
}

// ---- 1. every (state, event) pair -------------------------------------------

type Row = (St, Ev, Vec<Action>, &'static str);

/// (state, event, the exact actions, the summary after the step).
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Ev::*;
    use St::*;
    const REAP: Action = Action::Reap;
    vec![
        // Ready
        (Ready, Start, vec![notify_ready()], "Starting Starting running d=0 p=[] w=2 T=60s"),
        (Ready, Term, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (Ready, Int, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Hup, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Chld, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, ExitWorker, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, ExitUnknown, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Forked, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, ForkFailed, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, HooksTerminate, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, HooksReload, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, TimerEarly, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, TimerDue, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, ScaleUp, vec![], "Ready Starting d=- p=[] w=3 T=60s"),
        (Ready, ScaleDown, vec![], "Ready Starting d=- p=[] w=1 T=60s"),
        (Ready, ResetLimiter, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Reload, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Restart, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Stop, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (Ready, SetGracefulTimeout, vec![], "Ready Starting d=- p=[] w=2 T=5s"),
        (Ready, Interrupted, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, GroupGone, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Announced, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        (Ready, Refused, vec![], "Ready Starting d=- p=[] w=2 T=60s"),
        // Ready, stop asked
        (ReadyStopAsked, Start, vec![notify_ready(), notify(&[Notice::Stopping, Notice::ExtendTimeout(GRACEFUL + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE + KILL_WAIT), status("stopping: 0 workers left")]), info(STOP_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=250 p=[] w=2 T=60s"),
        (ReadyStopAsked, Term, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Int, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Hup, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Chld, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, ExitWorker, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, ExitUnknown, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Forked, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, ForkFailed, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, HooksTerminate, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, HooksReload, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, TimerEarly, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, TimerDue, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, ScaleUp, vec![], "Ready(stop-asked) Starting d=- p=[] w=3 T=60s"),
        (ReadyStopAsked, ScaleDown, vec![], "Ready(stop-asked) Starting d=- p=[] w=1 T=60s"),
        (ReadyStopAsked, ResetLimiter, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Reload, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Restart, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Stop, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, SetGracefulTimeout, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=5s"),
        (ReadyStopAsked, Interrupted, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, GroupGone, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Announced, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        (ReadyStopAsked, Refused, vec![], "Ready(stop-asked) Starting d=- p=[] w=2 T=60s"),
        // Supervising, starting
        (Starting, Start, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Term, vec![info(TERM_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60000 p=[100] w=2 T=60s"),
        (Starting, Int, vec![info(INT_LOG), kill(&[100], INT)], "FastExit Stopping running stopping d=500 p=[100] w=2 T=60s"),
        (Starting, Hup, vec![hooks(RELOAD)], "Reloading Reloading running d=10 p=[100] w=2 T=60s"),
        (Starting, Chld, vec![REAP], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, ExitWorker, vec![dead(0, 3), info("Child 100 exited with status 3")], "Starting Starting running d=10 p=[] w=2 T=60s"),
        (Starting, ExitUnknown, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Forked, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, ForkFailed, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, HooksTerminate, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, HooksReload, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, TimerEarly, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, TimerDue, vec![fork(1)], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (Starting, ScaleUp, vec![], "Starting Starting running d=10 p=[100] w=3 T=60s"),
        (Starting, ScaleDown, vec![], "Starting Starting running d=- p=[100] w=1 T=60s"),
        (Starting, ResetLimiter, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Reload, vec![hooks(RELOAD)], "Reloading Reloading running d=10 p=[100] w=2 T=60s"),
        (Starting, Restart, vec![kill(&[100], TERM)], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Stop, vec![info(STOP_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60000 p=[100] w=2 T=60s"),
        (Starting, SetGracefulTimeout, vec![], "Starting Starting running d=10 p=[100] w=2 T=5s"),
        (Starting, Interrupted, vec![kill(&[100], TERM)], "Stopping(interrupted) Stopping running stopping d=61000 p=[100] w=2 T=60s"),
        (Starting, GroupGone, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Announced, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        (Starting, Refused, vec![], "Starting Starting running d=10 p=[100] w=2 T=60s"),
        // Supervising, starting, fork under way
        (StartingForking, Start, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Term, vec![info(TERM_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping forking d=60010 p=[100] w=2 T=60s"),
        (StartingForking, Int, vec![info(INT_LOG), kill(&[100], INT)], "FastExit Stopping running stopping forking d=510 p=[100] w=2 T=60s"),
        (StartingForking, Hup, vec![hooks(RELOAD)], "Reloading Reloading running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Chld, vec![REAP], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, ExitWorker, vec![dead(0, 3), info("Child 100 exited with status 3")], "Starting Starting running forking d=- p=[] w=2 T=60s"),
        (StartingForking, ExitUnknown, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Forked, vec![], "Running Running running d=- p=[100, 200] w=2 T=60s"),
        (StartingForking, ForkFailed, vec![error("Failed to fork worker 1: EAGAIN")], "Starting Starting running d=20 p=[100] w=2 T=60s"),
        (StartingForking, HooksTerminate, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, HooksReload, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, TimerEarly, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, TimerDue, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, ScaleUp, vec![], "Starting Starting running forking d=- p=[100] w=3 T=60s"),
        (StartingForking, ScaleDown, vec![], "Starting Starting running forking d=- p=[100] w=1 T=60s"),
        (StartingForking, ResetLimiter, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Reload, vec![hooks(RELOAD)], "Reloading Reloading running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Restart, vec![kill(&[100], TERM)], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Stop, vec![info(STOP_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping forking d=60010 p=[100] w=2 T=60s"),
        (StartingForking, SetGracefulTimeout, vec![], "Starting Starting running forking d=- p=[100] w=2 T=5s"),
        (StartingForking, Interrupted, vec![kill(&[100], TERM)], "Stopping(interrupted) Stopping running stopping forking d=61010 p=[100] w=2 T=60s"),
        (StartingForking, GroupGone, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Announced, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        (StartingForking, Refused, vec![], "Starting Starting running forking d=- p=[100] w=2 T=60s"),
        // Supervising, running
        (Running, Start, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Term, vec![info(TERM_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (Running, Int, vec![info(INT_LOG), kill(&[100, 101], INT)], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (Running, Hup, vec![hooks(RELOAD)], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Running, Chld, vec![REAP], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, ExitWorker, vec![dead(0, 3), info("Child 100 exited with status 3")], "Running Running running d=20 p=[101] w=2 T=60s"),
        (Running, ExitUnknown, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Forked, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, ForkFailed, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, HooksTerminate, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, HooksReload, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, TimerEarly, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, TimerDue, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, ScaleUp, vec![], "Running Running running d=20 p=[100, 101] w=3 T=60s"),
        (Running, ScaleDown, vec![kill(&[101], TERM)], "Running Running running d=- p=[100, 101] w=1 T=60s"),
        (Running, ResetLimiter, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Reload, vec![hooks(RELOAD)], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Running, Restart, vec![kill(&[100], TERM)], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Stop, vec![info(STOP_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (Running, SetGracefulTimeout, vec![], "Running Running running d=- p=[100, 101] w=2 T=5s"),
        (Running, Interrupted, vec![kill(&[100, 101], TERM)], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (Running, GroupGone, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Announced, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Running, Refused, vec![], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        // Supervising, reloading
        (Reloading, Start, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Term, vec![info(TERM_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (Reloading, Int, vec![info(INT_LOG), kill(&[100, 101], INT)], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (Reloading, Hup, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Chld, vec![REAP], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, ExitWorker, vec![dead(0, 3), info("Child 100 exited with status 3")], "Reloading Reloading running d=20 p=[101] w=2 T=60s"),
        (Reloading, ExitUnknown, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Forked, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, ForkFailed, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, HooksTerminate, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, HooksReload, vec![kill(&[100, 101], HUP)], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, TimerEarly, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, TimerDue, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, ScaleUp, vec![], "Reloading Reloading running d=20 p=[100, 101] w=3 T=60s"),
        (Reloading, ScaleDown, vec![kill(&[101], TERM)], "Reloading Reloading running d=- p=[100, 101] w=1 T=60s"),
        (Reloading, ResetLimiter, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Reload, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Restart, vec![kill(&[100], TERM)], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Stop, vec![info(STOP_LOG), hooks(TERMINATE)], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (Reloading, SetGracefulTimeout, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=5s"),
        (Reloading, Interrupted, vec![kill(&[100, 101], TERM)], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (Reloading, GroupGone, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Announced, vec![], "Reloading Reloading running d=- p=[100, 101] w=2 T=60s"),
        (Reloading, Refused, vec![error(REFUSED)], "Running Running running d=- p=[100, 101] w=2 T=60s"),
        // Stopping, terminate hooks running
        (StoppingHooks, Start, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Term, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Int, vec![info(INT_LOG), kill(&[100, 101], INT)], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Hup, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Chld, vec![REAP], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, ExitWorker, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[101] w=2 T=60s"),
        (StoppingHooks, ExitUnknown, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Forked, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, ForkFailed, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, HooksTerminate, vec![debug(KILLING), kill(&[100, 101], TERM), debug(WAITING)], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, HooksReload, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, TimerEarly, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, TimerDue, vec![info(DEADLINE_LOG), kill(&[100, 101], INT)], "FastExit(deadline) Stopping running stopping d=60510 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, ScaleUp, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=3 T=60s"),
        (StoppingHooks, ScaleDown, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=1 T=60s"),
        (StoppingHooks, ResetLimiter, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Reload, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Restart, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Stop, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, SetGracefulTimeout, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=5s"),
        (StoppingHooks, Interrupted, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, GroupGone, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Announced, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        (StoppingHooks, Refused, vec![], "Stopping(hooks) Stopping running stopping d=60010 p=[100, 101] w=2 T=60s"),
        // Stopping, waiting for workers
        (StoppingWait, Start, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Term, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Int, vec![info(INT_LOG), kill(&[100, 101], INT)], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Hup, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Chld, vec![REAP], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, ExitWorker, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[101] w=2 T=60s"),
        (StoppingWait, ExitUnknown, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Forked, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, ForkFailed, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, HooksTerminate, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, HooksReload, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, TimerEarly, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, TimerDue, vec![info(DEADLINE_LOG), kill(&[100, 101], INT)], "FastExit(deadline) Stopping running stopping d=61510 p=[100, 101] w=2 T=60s"),
        (StoppingWait, ScaleUp, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=3 T=60s"),
        (StoppingWait, ScaleDown, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=1 T=60s"),
        (StoppingWait, ResetLimiter, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Reload, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Restart, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Stop, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, SetGracefulTimeout, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=5s"),
        (StoppingWait, Interrupted, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, GroupGone, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Announced, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingWait, Refused, vec![], "Stopping(wait) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        // Stopping, interrupted
        (StoppingInterrupted, Start, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Term, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Int, vec![info(INT_LOG), kill(&[100, 101], INT)], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Hup, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Chld, vec![REAP], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, ExitWorker, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[101] w=2 T=60s"),
        (StoppingInterrupted, ExitUnknown, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Forked, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, ForkFailed, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, HooksTerminate, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, HooksReload, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, TimerEarly, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, TimerDue, vec![info(DEADLINE_LOG), kill(&[100, 101], INT)], "FastExit(deadline) Stopping running stopping d=61510 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, ScaleUp, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=3 T=60s"),
        (StoppingInterrupted, ScaleDown, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=1 T=60s"),
        (StoppingInterrupted, ResetLimiter, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Reload, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Restart, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Stop, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, SetGracefulTimeout, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=5s"),
        (StoppingInterrupted, Interrupted, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, GroupGone, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Announced, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        (StoppingInterrupted, Refused, vec![], "Stopping(interrupted) Stopping running stopping d=61010 p=[100, 101] w=2 T=60s"),
        // Stopping, waiting for the process group
        (StoppingDraining, Start, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Term, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Int, vec![info(INT_LOG), killpg(INT), Action::WatchGroup], "FastExit Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Hup, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Chld, vec![REAP], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, ExitWorker, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, ExitUnknown, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Forked, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, ForkFailed, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, HooksTerminate, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, HooksReload, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, TimerEarly, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, TimerDue, vec![info("Still alive 500 ms after SIGTERM, killing with SIGKILL: the rest of the process group"), killpg(libc::SIGKILL), Action::WatchGroup], "Stopping(group) Stopping running stopping d=5510 p=[] w=2 T=60s"),
        (StoppingDraining, ScaleUp, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=3 T=60s"),
        (StoppingDraining, ScaleDown, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=1 T=60s"),
        (StoppingDraining, ResetLimiter, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Reload, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Restart, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Stop, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, SetGracefulTimeout, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=5s"),
        (StoppingDraining, Interrupted, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, GroupGone, vec![debug(FINISH), exit(Ending::Graceful)], "Done Stopping d=- p=[] w=2 T=60s"),
        (StoppingDraining, Announced, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        (StoppingDraining, Refused, vec![], "Stopping(group) Stopping running stopping d=510 p=[] w=2 T=60s"),
        // FastExit
        (FastExit, Start, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Term, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Int, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Hup, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Chld, vec![REAP], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, ExitWorker, vec![], "FastExit Stopping running stopping d=510 p=[101] w=2 T=60s"),
        (FastExit, ExitUnknown, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Forked, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, ForkFailed, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, HooksTerminate, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, HooksReload, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, TimerEarly, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, TimerDue, vec![info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 100, 101"), Action::Kill { pids: vec![100, 101] }], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExit, ScaleUp, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=3 T=60s"),
        (FastExit, ScaleDown, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=1 T=60s"),
        (FastExit, ResetLimiter, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Reload, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Restart, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Stop, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, SetGracefulTimeout, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=5s"),
        (FastExit, Interrupted, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, GroupGone, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Announced, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExit, Refused, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        // FastExit, group leader
        (FastExitGroup, Start, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Term, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Int, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Hup, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Chld, vec![REAP], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, ExitWorker, vec![], "FastExit Stopping running stopping d=510 p=[101] w=2 T=60s"),
        (FastExitGroup, ExitUnknown, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Forked, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, ForkFailed, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, HooksTerminate, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, HooksReload, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, TimerEarly, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, TimerDue, vec![info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 100, 101 and the rest of the process group"), Action::Kill { pids: vec![100, 101] }, killpg(libc::SIGKILL)], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, ScaleUp, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=3 T=60s"),
        (FastExitGroup, ScaleDown, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=1 T=60s"),
        (FastExitGroup, ResetLimiter, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Reload, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Restart, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Stop, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, SetGracefulTimeout, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=5s"),
        (FastExitGroup, Interrupted, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, GroupGone, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Announced, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        (FastExitGroup, Refused, vec![], "FastExit Stopping running stopping d=510 p=[100, 101] w=2 T=60s"),
        // FastExit, SIGKILL sent
        (FastExitKilled, Start, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Term, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Int, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Hup, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Chld, vec![REAP], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, ExitWorker, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[101] w=2 T=60s"),
        (FastExitKilled, ExitUnknown, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Forked, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, ForkFailed, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, HooksTerminate, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, HooksReload, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, TimerEarly, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, TimerDue, vec![error("Exiting: workers 100, 101 outlived SIGKILL"), exit(Ending::FastExit)], "Done Stopping d=- p=[100, 101] w=2 T=60s"),
        (FastExitKilled, ScaleUp, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=3 T=60s"),
        (FastExitKilled, ScaleDown, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=1 T=60s"),
        (FastExitKilled, ResetLimiter, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Reload, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Restart, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Stop, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, SetGracefulTimeout, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=5s"),
        (FastExitKilled, Interrupted, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, GroupGone, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Announced, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        (FastExitKilled, Refused, vec![], "FastExit(killed) Stopping running stopping d=5510 p=[100, 101] w=2 T=60s"),
        // Done
        (Done, Start, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Term, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Int, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Hup, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Chld, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, ExitWorker, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, ExitUnknown, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Forked, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, ForkFailed, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, HooksTerminate, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, HooksReload, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, TimerEarly, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, TimerDue, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, ScaleUp, vec![], "Done Stopping d=- p=[] w=3 T=60s"),
        (Done, ScaleDown, vec![], "Done Stopping d=- p=[] w=1 T=60s"),
        (Done, ResetLimiter, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Reload, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Restart, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Stop, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, SetGracefulTimeout, vec![], "Done Stopping d=- p=[] w=2 T=5s"),
        (Done, Interrupted, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, GroupGone, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Announced, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
        (Done, Refused, vec![], "Done Stopping d=- p=[] w=2 T=60s"),
    ]
}

#[test]
fn every_state_event_pair() {
    let t0 = Instant::now();
    let rows = rows();
    let pairs: Vec<(St, Ev)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let all: Vec<(St, Ev)> = St::ALL
        .iter()
        .flat_map(|s| Ev::ALL.iter().map(move |e| (*s, *e)))
        .collect();
    assert_eq!(pairs, all, "one row per (state, event), in order");
    let mut failures = Vec::new();
    for (st, ev, want, want_summary) in rows {
        let (_, h, actions) = run_cell(st, ev, t0);
        if actions != want || h.summary() != want_summary {
            failures.push(format!(
                "{} + {}:\n  actions {actions:?}\n  wanted  {want:?}\n  \
                 summary {}\n  wanted  {want_summary}",
                st.name(),
                ev.name(),
                h.summary()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- 2. the state × event table of the docs ---------------------------------

const TABLE_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/master-state-machine.md");
const TABLE_BEGIN: &str = "<!-- state-table:begin -->\n";
const TABLE_END: &str = "<!-- state-table:end -->\n";

/// One table cell: the actions in order, then what changed that no action
/// says (`+worker`/`-worker`, `count`, `timeout`, `timer`), then `→ <phase>` when the phase
/// changed; `ignored` when nothing at all happened.
fn summarize(before: &H, after: &H, actions: &[Action]) -> String {
    let sig = |s: i32| match s {
        libc::SIGTERM => "TERM",
        libc::SIGINT => "INT",
        libc::SIGHUP => "HUP",
        libc::SIGKILL => "KILL",
        _ => "?",
    };
    let mut parts: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Fork { .. } => "fork".into(),
            Action::Signal { sig: s, .. } => format!("kill({})", sig(*s)),
            Action::SignalGroup { sig: s } => format!("killpg({})", sig(*s)),
            Action::Reap => "reap".into(),
            Action::RunHooks(HookKind::Terminate) => "hooks(terminate)".into(),
            Action::RunHooks(HookKind::Reload) => "hooks(reload)".into(),
            Action::DeadWorkerHooks { .. } => "hooks(dead-worker)".into(),
            Action::Log { .. } => "log".into(),
            Action::Notify(_) => "notify".into(),
            Action::Kill { .. } => "kill(KILL)".into(),
            Action::WatchGroup => "watch-group".into(),
            Action::WriteMetrics => "metrics".into(),
            Action::Exit(Ending::Graceful) => "exit(graceful)".into(),
            Action::Exit(Ending::Interrupted) => "exit(interrupted)".into(),
            Action::Exit(Ending::FastExit) => "exit(fast)".into(),
            Action::Exit(Ending::Stopped { status }) => format!("exit(stopped {status})"),
        })
        .collect();
    let (was, is) = (before.m.pids().count(), after.m.pids().count());
    if is > was {
        parts.push("+worker".into());
    } else if is < was {
        parts.push("-worker".into());
    }
    if after.m.workers_of(S) != before.m.workers_of(S) {
        parts.push("count".into());
    }
    if after.m.graceful_timeout() != before.m.graceful_timeout() {
        parts.push("timeout".into());
    }
    let phase_before = phase_name(&before.m);
    let phase_after = phase_name(&after.m);
    if phase_before == phase_after && after.m.deadline() != before.m.deadline() {
        parts.push("timer".into());
    }
    let mut cell = parts.join(", ");
    if phase_before != phase_after {
        if !cell.is_empty() {
            cell.push(' ');
        }
        cell.push_str("→ ");
        cell.push_str(phase_after);
    }
    if cell.is_empty() {
        cell = "ignored".into();
    }
    cell
}

/// The markdown table, computed from the machine.
fn state_table() -> String {
    let t0 = Instant::now();
    let mut out = String::from("| state |");
    for ev in Ev::ALL {
        out += &format!(" {} |", ev.name());
    }
    out += "\n|---|";
    out += &"---|".repeat(Ev::ALL.len());
    out += "\n";
    for st in St::ALL {
        out += &format!("| {} |", st.name());
        for ev in Ev::ALL {
            let before = st.build(t0);
            let (_, after, actions) = run_cell(st, ev, t0);
            out += &format!(" {} |", summarize(&before, &after, &actions));
        }
        out += "\n";
    }
    out
}

#[test]
fn the_documented_state_table_is_the_machines() {
    let table = state_table();
    let doc = std::fs::read_to_string(TABLE_DOC).expect("docs/master-state-machine.md");
    let begin = doc.find(TABLE_BEGIN).expect("the table's begin marker") + TABLE_BEGIN.len();
    let end = doc.find(TABLE_END).expect("the table's end marker");
    if doc[begin..end] == table {
        return;
    }
    if std::env::var_os("UPDATE_STATE_TABLE").is_some_and(|v| v == "1") {
        let new = format!("{}{table}{}", &doc[..begin], &doc[end..]);
        std::fs::write(TABLE_DOC, new).expect("rewrite docs/master-state-machine.md");
        return;
    }
    panic!(
        "docs/master-state-machine.md is out of date; paste this table between \
         the markers (or run the test with UPDATE_STATE_TABLE=1):\n\n{table}"
    );
}

// ---- the contract's sequences -----------------------------------------------

/// Started as group leader or not, `n` workers forked (pids 100..), at
/// 10 ms per fork; `now` is the last fork's time.
fn supervising(t0: Instant, n: i64, group_leader: bool) -> H {
    let mut h = H::new(t0, n);
    assert_eq!(h.step(start(group_leader, false)), vec![]);
    for w in 0..n as usize {
        h.at(10 * w as u64);
        assert_eq!(h.step(Event::Timer), vec![fork(w)]);
        assert_eq!(h.step(forked(100 + w as i32)), vec![]);
    }
    assert_eq!(h.m.state(), ManagerState::Running);
    h
}

#[test]
fn sigterm_as_group_leader_stops_gracefully_in_the_contracts_order() {
    let mut h = supervising(Instant::now(), 2, true);
    assert_eq!(
        h.at(1000).step(Event::Signal(Sig::Term)),
        vec![info(TERM_LOG), hooks(TERMINATE)]
    );
    assert_eq!(h.deadline_ms(), Some(61_000), "graceful timeout armed");
    assert_eq!(h.step(Event::Signal(Sig::Term)), vec![], "SIGTERM ignored");
    assert_eq!(
        h.step(Event::HooksDone(TERMINATE)),
        vec![debug(KILLING), kill(&[100, 101], TERM), debug(WAITING)]
    );
    assert_eq!(h.step(Event::Signal(Sig::Term)), vec![], "SIGTERM ignored");
    assert_eq!(h.step(Event::Signal(Sig::Hup)), vec![], "SIGHUP ignored");
    assert_eq!(h.step(Event::Signal(Sig::Chld)), vec![Action::Reap]);
    // No dead-worker hooks nor "Child ..." lines while stopping.
    assert_eq!(h.step(exited(101, Exit::Signal(TERM))), vec![]);
    assert_eq!(h.at(1500).step(Event::Timer), vec![], "before the deadline");
    // The workers' own children in the group get SIGTERM, and the stop
    // waits kill_grace for them.
    assert_eq!(
        h.step(exited(100, Exit::Code(0))),
        vec![killpg(TERM), Action::WatchGroup]
    );
    assert_eq!(h.deadline_ms(), Some(2000), "kill_grace for the group");
    assert_eq!(
        h.step(Event::GroupGone),
        vec![debug(FINISH), exit(Ending::Graceful)]
    );
    assert!(!h.m.is_running());
    assert_eq!(h.m.deadline(), None);
    assert_eq!(
        h.step(Event::Command(Command::Stop(StopCause::Requested))),
        vec![],
        "harmless"
    );
}

/// The first line of a graceful stop says what began it: SIGTERM, or a
/// `shutdown()` call (which the Python face logs as SIGTERM, as its
/// reference sends one), before and during `run()`.
#[test]
fn a_stop_tells_its_cause() {
    for (cause, text) in [
        (StopCause::Requested, STOP_LOG),
        (StopCause::Sigterm, TERM_LOG),
    ] {
        let mut h = supervising(Instant::now(), 2, false);
        assert_eq!(
            h.step(Event::Command(Command::Stop(cause))),
            vec![info(text), hooks(TERMINATE)],
            "{cause:?} while running"
        );
        let mut h = H::new(Instant::now(), 2);
        assert_eq!(h.step(Event::Command(Command::Stop(cause))), vec![]);
        assert!(
            h.step(start(false, false)).contains(&info(text)),
            "{cause:?} before run"
        );
    }
}

#[test]
fn a_stop_before_run_stops_as_soon_as_it_starts() {
    let mut h = H::new(Instant::now(), 2);
    assert_eq!(
        h.step(Event::Command(Command::Stop(StopCause::Requested))),
        vec![]
    );
    assert_eq!(
        h.step(start(true, true)),
        vec![
            notify_ready(),
            notify(&[
                Notice::Stopping,
                Notice::ExtendTimeout(
                    GRACEFUL + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE + KILL_WAIT
                ),
                status("stopping: 0 workers left")
            ]),
            info(STOP_LOG),
            hooks(TERMINATE)
        ]
    );
    assert_eq!(
        h.step(Event::HooksDone(TERMINATE)),
        vec![
            notify(&[
                Notice::ExtendTimeout(
                    GRACEFUL + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE + KILL_WAIT
                ),
                status("stopping: 0 workers left")
            ]),
            debug(KILLING),
            debug(WAITING),
            killpg(TERM),
            Action::WatchGroup
        ],
        "no worker was ever forked; systemd told the workers' deadline"
    );
    assert_eq!(
        h.step(Event::GroupGone),
        vec![debug(FINISH), exit(Ending::Graceful)]
    );
}

#[test]
fn sigint_as_group_leader_signals_the_group_and_exits_once_workers_are_gone() {
    let mut h = supervising(Instant::now(), 2, true);
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![info(INT_LOG), killpg(INT)]
    );
    assert_eq!(h.deadline_ms(), Some(10 + 500));
    assert_eq!(h.step(Event::Signal(Sig::Int)), vec![]);
    assert_eq!(h.step(Event::Signal(Sig::Term)), vec![]);
    assert_eq!(h.step(exited(100, Exit::Signal(INT))), vec![]);
    // The workers gone, the rest of the group may still run: watched.
    assert_eq!(
        h.step(exited(101, Exit::Signal(INT))),
        vec![Action::WatchGroup]
    );
    assert_eq!(h.step(Event::GroupGone), vec![exit(Ending::FastExit)]);
}

#[test]
fn what_the_workers_left_in_the_group_gets_sigkill_after_kill_grace() {
    let mut h = supervising(Instant::now(), 1, true);
    h.at(100).step(Event::Signal(Sig::Term));
    h.step(Event::HooksDone(TERMINATE));
    assert_eq!(
        h.step(exited(100, Exit::Code(0))),
        vec![killpg(TERM), Action::WatchGroup]
    );
    assert_eq!(h.deadline_ms(), Some(600));
    assert_eq!(
        h.at(600).step(Event::Timer),
        vec![
            info("Still alive 500 ms after SIGTERM, killing with SIGKILL: the rest of the process group"),
            killpg(libc::SIGKILL),
            Action::WatchGroup
        ]
    );
    assert_eq!(h.deadline_ms(), Some(5600), "a last wait for the kill");
    // The stop was graceful: the workers ended well.
    assert_eq!(
        h.step(Event::GroupGone),
        vec![debug(FINISH), exit(Ending::Graceful)]
    );
    // What even SIGKILL cannot end at once is named, and the stop ends.
    let mut h = supervising(Instant::now(), 1, true);
    h.at(100).step(Event::Signal(Sig::Term));
    h.step(Event::HooksDone(TERMINATE));
    h.step(exited(100, Exit::Code(0)));
    h.at(600).step(Event::Timer);
    assert_eq!(
        h.at(5600).step(Event::Timer),
        vec![
            error("Processes of the group outlived SIGKILL"),
            debug(FINISH),
            exit(Ending::Graceful)
        ]
    );
}

#[test]
fn what_outlives_the_grace_gets_sigkill_and_is_reaped() {
    // Not the group leader: the workers (and what they started) by pid.
    let mut h = supervising(Instant::now(), 2, false);
    h.step(Event::Signal(Sig::Int));
    assert_eq!(h.step(exited(100, Exit::Signal(INT))), vec![]);
    assert_eq!(
        h.at(510).step(Event::Timer),
        vec![
            info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 101"),
            Action::Kill { pids: vec![101] }
        ]
    );
    assert_eq!(h.deadline_ms(), Some(5510), "a last wait for the kill");
    assert_eq!(
        h.step(exited(101, Exit::Signal(libc::SIGKILL))),
        vec![exit(Ending::FastExit)],
        "reaped, then exit"
    );
    // The group leader: its group too, and it waits for the group.
    let mut h = supervising(Instant::now(), 1, true);
    h.m.set_kill_grace(ms(200));
    h.step(Event::Signal(Sig::Int));
    assert_eq!(
        h.step(exited(100, Exit::Signal(INT))),
        vec![Action::WatchGroup]
    );
    assert_eq!(
        h.at(200).step(Event::Timer),
        vec![
            info("Still alive 200 ms after SIGINT, killing with SIGKILL: the rest of the process group"),
            killpg(libc::SIGKILL),
            Action::WatchGroup
        ]
    );
    assert_eq!(h.step(Event::GroupGone), vec![exit(Ending::FastExit)]);
    // What even SIGKILL cannot end at once (uninterruptible sleep) is
    // waited for KILL_WAIT, then named.
    let mut h = supervising(Instant::now(), 1, false);
    h.step(Event::Signal(Sig::Int));
    h.at(510).step(Event::Timer);
    assert_eq!(h.at(5509).step(Event::Timer), vec![]);
    assert_eq!(
        h.at(5510).step(Event::Timer),
        vec![
            error("Exiting: workers 100 outlived SIGKILL"),
            exit(Ending::FastExit)
        ]
    );
}

#[test]
fn sigint_exits_after_the_grace_when_workers_linger() {
    let mut h = supervising(Instant::now(), 2, false);
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![info(INT_LOG), kill(&[100, 101], INT)]
    );
    assert_eq!(h.at(509).step(Event::Timer), vec![]);
    assert_eq!(
        h.at(510).step(Event::Timer),
        vec![
            info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 100, 101"),
            Action::Kill {
                pids: vec![100, 101]
            }
        ]
    );
    h.step(exited(100, Exit::Signal(libc::SIGKILL)));
    assert_eq!(
        h.step(exited(101, Exit::Signal(libc::SIGKILL))),
        vec![exit(Ending::FastExit)]
    );
}

#[test]
fn the_graceful_deadline_turns_into_a_fast_exit() {
    let mut h = supervising(Instant::now(), 2, false);
    let five = Duration::from_secs(5);
    assert_eq!(
        h.step(Event::Command(Command::SetGracefulTimeout(five))),
        vec![]
    );
    h.at(100).step(Event::Signal(Sig::Term));
    h.step(Event::HooksDone(TERMINATE));
    assert_eq!(h.deadline_ms(), Some(6100));
    assert_eq!(h.at(6099).step(Event::Timer), vec![]);
    assert_eq!(
        h.at(6100).step(Event::Timer),
        vec![info(DEADLINE_LOG), kill(&[100, 101], INT)]
    );
    assert_eq!(h.deadline_ms(), Some(6600));
    h.step(exited(100, Exit::Signal(INT)));
    let record = h.m.id_record(S, 0).expect("worker 0's record");
    assert!(matches!(
        record.last_exit,
        Some(LastExit::Deadline { signal: INT, .. })
    ));
    assert_eq!(
        h.at(6600).step(Event::Timer),
        vec![
            info("Still alive 500 ms after SIGINT, killing with SIGKILL: workers 101"),
            Action::Kill { pids: vec![101] }
        ]
    );
    assert_eq!(
        h.step(exited(101, Exit::Signal(libc::SIGKILL))),
        vec![exit(Ending::FastExit)]
    );
}

#[test]
fn no_graceful_timeout_means_no_deadline() {
    let mut h = supervising(Instant::now(), 1, false);
    h.step(Event::Command(Command::SetGracefulTimeout(Duration::ZERO)));
    h.step(Event::Signal(Sig::Term));
    h.step(Event::HooksDone(TERMINATE));
    assert_eq!(h.m.deadline(), None);
    assert!(h.m.stopping());
}

#[test]
fn a_dead_worker_is_respawned_with_the_same_id() {
    // Forks at 0, 10, 20 ms; E = 3; deaths 5 s later, the limiter quiet.
    let mut h = supervising(Instant::now(), 3, false);
    assert_eq!(
        h.at(5000).step(exited(101, Exit::Signal(libc::SIGKILL))),
        vec![
            dead(1, -libc::SIGKILL),
            info("Child 101 killed by signal SIGKILL")
        ]
    );
    assert_eq!(h.deadline_ms(), Some(5000), "a lone respawn goes at once");
    assert_eq!(h.step(Event::Timer), vec![fork(1)]);
    assert_eq!(h.step(forked(200)), vec![]);
    assert_eq!(h.m.running_pid(S, 1), Some(200));
    assert_eq!(h.m.id_record(S, 1).map(|r| r.forks), Some(2));
    assert_eq!(
        h.step(exited(102, Exit::Code(7))),
        vec![dead(2, 7), info("Child 102 exited with status 7")]
    );
    assert_eq!(
        h.step(exited(100, Exit::Lost)),
        vec![
            dead(0, crate::LOST_STATUS),
            info(&format!(
                "Child 100 exited with status {}",
                crate::LOST_STATUS
            ))
        ]
    );
    // Lowest id first.
    assert_eq!(h.step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.step(forked(201)), vec![]);
    assert_eq!(h.step(Event::Timer), vec![fork(2)]);
}

#[test]
fn reconfigure_down_stops_the_extra_workers_once() {
    let mut h = supervising(Instant::now(), 4, false);
    // The contract's rule: at least 1 - current.
    assert!(h.m.check_scale(S, -3).is_ok());
    assert!(matches!(
        h.m.check_scale(S, -4),
        Err(crate::Error::InvalidWorkers {
            minimum: -3,
            given: -4,
            ..
        })
    ));
    assert!(matches!(
        h.m.check_scale(ServiceId(9), 1),
        Err(crate::Error::UnknownService(ServiceId(9)))
    ));
    assert_eq!(h.step(scale(2)), vec![kill(&[102, 103], TERM)]);
    assert_eq!(h.m.extra_ids(S), BTreeSet::from([2, 3]));
    assert_eq!(h.step(scale(2)), vec![], "once");
    assert_eq!(h.step(Event::Signal(Sig::Chld)), vec![Action::Reap]);
    assert_eq!(
        h.step(exited(103, Exit::Code(0))),
        vec![dead(3, 0), info("Child 103 exited with status 0")]
    );
    assert_eq!(h.m.deadline(), None, "no respawn above the count");
    // Back up to 3: worker 2 still runs (stopping), it is respawned once gone.
    assert_eq!(h.step(scale(3)), vec![]);
    assert_eq!(h.m.deadline(), None);
    h.step(exited(102, Exit::Code(0)));
    assert_eq!(
        h.deadline_ms(),
        Some(40),
        "wait_interval after the last fork"
    );
    assert_eq!(h.at(40).step(Event::Timer), vec![fork(2)]);
}

/// One worker crash-looping: its third fork within a second finds more
/// than E = 1 forks in the last E seconds.
fn crash_loop_until_too_fast(t0: Instant) -> H {
    let mut h = supervising(t0, 1, false);
    assert_eq!(h.step(exited(100, Exit::Code(1))).len(), 2);
    assert_eq!(
        h.deadline_ms(),
        Some(10),
        "wait_interval after the fork at 0"
    );
    assert_eq!(h.at(10).step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.step(forked(101)), vec![]);
    assert_eq!(
        h.at(20).step(exited(101, Exit::Code(1))),
        vec![
            dead(0, 1),
            info("Child 101 exited with status 1"),
            info(TOO_FAST)
        ]
    );
    assert_eq!(h.deadline_ms(), Some(5020), "5 s");
    assert_eq!(h.m.limiter_until(h.now), Some(t0 + ms(5020)));
    h
}

#[test]
fn the_limiter_waits_five_seconds_when_forking_too_fast() {
    let t0 = Instant::now();
    let mut h = crash_loop_until_too_fast(t0);
    // Signals are handled during the wait.
    assert_eq!(
        h.at(3000).step(Event::Signal(Sig::Chld)),
        vec![Action::Reap]
    );
    assert_eq!(h.step(Event::Timer), vec![]);
    assert_eq!(h.at(5019).step(Event::Timer), vec![]);
    assert_eq!(h.at(5020).step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.m.limiter_until(h.now), None);
    assert_eq!(h.step(forked(102)), vec![]);
    // The forks at 10 ms and 5020 ms: the oldest is more than 1 s old,
    // the next goes at once (no wait_interval either: the reference's
    // rule).
    assert_eq!(h.at(5030).step(exited(102, Exit::Code(1))).len(), 2);
    assert_eq!(h.deadline_ms(), Some(5030));
}

#[test]
fn reload_resets_the_limiter() {
    let mut h = crash_loop_until_too_fast(Instant::now());
    assert_eq!(h.at(100).step(Event::Signal(Sig::Hup)), vec![hooks(RELOAD)]);
    assert_eq!(h.deadline_ms(), Some(5020), "not before the hooks ran");
    assert_eq!(h.step(Event::HooksDone(RELOAD)), vec![]);
    assert_eq!(h.deadline_ms(), Some(100), "the fork goes at once");
    assert_eq!(h.m.limiter_until(h.now), None);
    assert_eq!(h.step(Event::Timer), vec![fork(0)]);
}

#[test]
fn a_refused_reload_sends_no_sighup_and_keeps_the_limiter() {
    let mut h = crash_loop_until_too_fast(Instant::now());
    assert_eq!(h.at(100).step(Event::Signal(Sig::Hup)), vec![hooks(RELOAD)]);
    let refused = Event::ReloadRefused {
        reason: "bad config".into(),
    };
    assert_eq!(h.step(refused.clone()), vec![error(REFUSED)]);
    assert_eq!(h.deadline_ms(), Some(5020), "the limiter still holds");
    assert!(h.m.limiter_until(h.now).is_some());
    // Not reloading any more: a second refusal changes nothing, and the
    // next SIGHUP runs the hooks again.
    assert_eq!(h.step(refused), vec![]);
    assert_eq!(h.step(Event::Signal(Sig::Hup)), vec![hooks(RELOAD)]);

    // With workers: none gets SIGHUP, and no reload is counted.
    let mut h = reloading(Instant::now());
    let before = h.m.services[0].counters.reloads;
    let actions = h.step(Event::ReloadRefused {
        reason: "bad config".into(),
    });
    assert!(!actions.iter().any(|a| matches!(a, Action::Signal { .. })));
    assert_eq!(h.m.services[0].counters.reloads, before);
    assert_eq!(
        h.step(Event::HooksDone(RELOAD)),
        vec![],
        "the reload is over"
    );
}

#[test]
fn reconfigure_and_reset_limiter_reset_the_limiter() {
    for cmd in [
        Command::Scale {
            service: S,
            workers: 1,
        },
        Command::ResetLimiter,
    ] {
        let mut h = crash_loop_until_too_fast(Instant::now());
        assert_eq!(h.at(100).step(Event::Command(cmd.clone())), vec![]);
        assert_eq!(h.deadline_ms(), Some(100), "{cmd:?}");
        assert_eq!(h.step(Event::Timer), vec![fork(0)], "{cmd:?}");
    }
}

#[test]
fn a_fork_under_way_when_a_stop_begins_gets_the_signal() {
    let t0 = Instant::now();
    // SIGTERM: the terminate hooks run while the fork is under way and
    // the new worker is in the SIGTERM batch.
    let mut h = starting_forking(t0);
    h.step(Event::Signal(Sig::Term));
    assert_eq!(h.step(forked(101)), vec![]);
    assert_eq!(
        h.step(Event::HooksDone(TERMINATE)),
        vec![debug(KILLING), kill(&[100, 101], TERM), debug(WAITING)]
    );
    // The hooks ran before the fork's outcome came.
    let mut h = starting_forking(t0);
    h.step(Event::Signal(Sig::Term));
    assert_eq!(
        h.step(Event::HooksDone(TERMINATE)),
        vec![debug(KILLING), kill(&[100], TERM), debug(WAITING)]
    );
    assert_eq!(h.step(exited(100, Exit::Code(0))), vec![], "fork under way");
    assert_eq!(h.step(forked(101)), vec![kill(&[101], TERM)]);
    assert_eq!(
        h.step(exited(101, Exit::Code(0))),
        vec![debug(FINISH), exit(Ending::Graceful)]
    );
    // Interrupted.
    let mut h = starting_forking(t0);
    assert_eq!(h.step(Event::Interrupted), vec![kill(&[100], TERM)]);
    assert_eq!(h.step(forked(101)), vec![kill(&[101], TERM)]);
    // SIGINT: the new worker gets SIGINT too, even when the group got it.
    let mut h = starting_forking(t0);
    h.m.group_leader = true;
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![info(INT_LOG), killpg(INT)]
    );
    assert_eq!(h.step(forked(101)), vec![kill(&[101], INT)]);
    // A failed fork ends the stop if it was the last thing awaited.
    let mut h = starting_forking(t0);
    h.step(Event::Signal(Sig::Int));
    assert_eq!(h.step(exited(100, Exit::Signal(INT))), vec![]);
    assert_eq!(
        h.step(Event::ForkFailed {
            error: "EAGAIN".into()
        }),
        vec![
            error("Failed to fork worker 1: EAGAIN"),
            exit(Ending::FastExit)
        ]
    );
}

#[test]
fn a_worker_forked_while_its_count_went_down_is_stopped() {
    let mut h = starting_forking(Instant::now());
    assert_eq!(h.step(scale(1)), vec![]);
    assert_eq!(h.step(forked(101)), vec![kill(&[101], TERM)]);
    assert_eq!(h.m.state(), ManagerState::Running);
}

#[test]
fn restart_stops_one_worker_once_and_it_comes_back() {
    let mut h = supervising(Instant::now(), 2, false);
    let restart = Event::Command(Command::Restart {
        service: S,
        worker: 1,
    });
    assert_eq!(h.at(1000).step(restart.clone()), vec![kill(&[101], TERM)]);
    assert_eq!(h.m.running_pid(S, 1), None, "stopping");
    assert_eq!(h.step(restart), vec![], "once");
    assert_eq!(h.step(exited(101, Exit::Code(0))).len(), 2);
    assert_eq!(h.step(Event::Timer), vec![fork(1)]);
}

#[test]
fn interrupted_stops_without_hooks_nor_lines() {
    let mut h = supervising(Instant::now(), 1, true);
    assert_eq!(h.step(Event::Interrupted), vec![kill(&[100], TERM)]);
    assert_eq!(
        h.step(exited(100, Exit::Code(0))),
        vec![killpg(TERM), Action::WatchGroup]
    );
    assert_eq!(
        h.step(Event::GroupGone),
        vec![debug(FINISH), exit(Ending::Interrupted)]
    );
}

// ---- 3. properties over random event sequences ------------------------------
//
// A simulator feeds the machine the way `run_loop.rs` does: `Fork` is
// followed at once by `Forked` (or `ForkFailed`), `RunHooks` by
// `HooksDone`, `Reap` by a `ChildExited` per worker the simulation marked
// dead, and `Timer` is fed whenever the fake clock reaches `deadline()`
// (the loop's poll wakes at the deadline, so time never jumps over it).

#[derive(Clone, Debug)]
enum Op {
    /// A running worker (the `pick`-th, modulo their number) ends so.
    Die {
        pick: usize,
        exit: Exit,
    },
    /// Every worker that got SIGTERM or SIGINT ends of it.
    Obey,
    Signal(Sig),
    /// Set the count of a service; raised to the contract's minimum.
    Scale {
        service: usize,
        workers: i64,
    },
    Restart {
        service: usize,
        worker: WorkerId,
    },
    ResetLimiter,
    Stop,
    Interrupted,
    SetGracefulTimeout {
        secs: u64,
    },
    /// The clock moves on by this many ms (timers fire on the way).
    Jump(u64),
    /// The next fork fails.
    FailNextFork,
    /// A running worker announces a restart (its default reload), then
    /// ends with status 0.
    Announce {
        pick: usize,
    },
}

fn exit_strategy() -> impl Strategy<Value = Exit> {
    prop_oneof![
        Just(Exit::Code(0)),
        Just(Exit::Code(1)),
        Just(Exit::Signal(libc::SIGKILL)),
        Just(Exit::Signal(libc::SIGSEGV)),
        Just(Exit::Lost),
    ]
}

/// The ops of a master left alone to supervise (no stop).
fn supervising_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<usize>(), exit_strategy()).prop_map(|(pick, exit)| Op::Die { pick, exit }),
        4 => Just(Op::Obey),
        12 => prop::sample::select(vec![0u64, 1, 10, 100, 1000, 5000]).prop_map(Op::Jump),
        3 => Just(Op::Signal(Sig::Hup)),
        2 => Just(Op::Signal(Sig::Chld)),
        4 => (0..2usize, -3i64..=4).prop_map(|(service, workers)| Op::Scale { service, workers }),
        4 => (0..2usize, 0..4usize).prop_map(|(service, worker)| Op::Restart { service, worker }),
        2 => Just(Op::ResetLimiter),
        2 => prop::sample::select(vec![0u64, 1, 3, 60])
            .prop_map(|secs| Op::SetGracefulTimeout { secs }),
        2 => Just(Op::FailNextFork),
        2 => any::<usize>().prop_map(|pick| Op::Announce { pick }),
    ]
}

/// A service's restart policy: mostly the contract's, else any mix.
fn policy_strategy() -> impl Strategy<Value = crate::ServicePolicy> {
    use crate::policy::{Backoff, GiveUp, Restart};
    let restart = prop::sample::select(vec![Restart::Always, Restart::OnFailure, Restart::Never]);
    let backoff = prop::option::of(
        (
            prop::sample::select(vec![10u64, 100, 1000]),
            prop::sample::select(vec![1u32, 4, 16]),
            prop::sample::select(vec![0.0, 0.5]),
            prop::sample::select(vec![100u64, 10_000]),
        )
            .prop_map(|(base, times, jitter, stable)| {
                Backoff::new(ms(base), ms(base) * times)
                    .jitter(jitter)
                    .stable(ms(stable))
            }),
    );
    let give_up = prop::option::of(
        (1u32..4, prop::sample::select(vec![1u64, 10]))
            .prop_map(|(n, secs)| GiveUp::new(n, Duration::from_secs(secs))),
    );
    prop_oneof![
        2 => Just(crate::ServicePolicy::default()),
        1 => (restart, any::<bool>(), backoff, give_up).prop_map(|(r, stop, b, g)| {
            let mut p = crate::ServicePolicy::default().restart(r).stop_on_exit(stop);
            p.backoff = b;
            p.give_up = g;
            p
        }),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        24 => supervising_op(),
        1 => Just(Op::Signal(Sig::Term)),
        1 => Just(Op::Signal(Sig::Int)),
        1 => Just(Op::Stop),
        1 => Just(Op::Interrupted),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    counts: Vec<i64>,
    group_leader: bool,
    wait_ms: u64,
    graceful_secs: u64,
    ops: Vec<Op>,
    /// At the end, the workers ignore signals (else they obey them).
    hang_at_end: bool,
    /// The services' restart policies (the contract's for those missing).
    policies: Vec<crate::ServicePolicy>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(1i64..=3, 1..=2),
        any::<bool>(),
        prop::sample::select(vec![0u64, 10]),
        prop::sample::select(vec![0u64, 1, 5, 60]),
        prop::collection::vec(supervising_op(), 0..150),
        prop::collection::vec(any_op(), 0..50),
        any::<bool>(),
        prop::collection::vec(policy_strategy(), 2),
    )
        .prop_map(
            |(
                counts,
                group_leader,
                wait_ms,
                graceful_secs,
                mut ops,
                tail,
                hang_at_end,
                policies,
            )| {
                ops.extend(tail);
                Case {
                    counts,
                    group_leader,
                    wait_ms,
                    graceful_secs,
                    ops,
                    hang_at_end,
                    policies,
                }
            },
        )
}

struct Sim {
    m: Machine,
    services: Vec<ServiceId>,
    now: Instant,
    group_leader: bool,
    next_pid: i32,
    /// Forked and not yet reported ended (maybe dead, not reaped).
    live: BTreeMap<i32, (ServiceId, WorkerId)>,
    /// Ended, waiting for a reap.
    dead: BTreeMap<i32, Exit>,
    /// The signals each pid got, directly or through its group.
    got: BTreeMap<i32, Vec<i32>>,
    forked_all: BTreeSet<i32>,
    reaped_all: BTreeSet<i32>,
    /// The last worker reported ended, for its dead-worker hooks.
    last_reaped: Option<((ServiceId, WorkerId), Exit)>,
    /// Fork times since the limiter's last reset, and E for them.
    forks: Vec<Instant>,
    expected: usize,
    fail_next: bool,
    /// Workers that announced a restart.
    announced: BTreeSet<i32>,
    /// How the stop under way is to end, and when the Exit must come by.
    stop: Option<Ending>,
    exit_by: Option<Instant>,
    /// SIGINT or the deadline turned the stop into a fast exit.
    fast: bool,
    exit: Option<Ending>,
    steps: usize,
    /// The machine asked to hear when the process group is gone.
    watching_group: bool,
}

impl Sim {
    fn new(case: &Case) -> Sim {
        let mut m = Machine::new(ms(case.wait_ms), Duration::from_secs(case.graceful_secs));
        let services: Vec<ServiceId> = (0..case.counts.len() as u64).map(ServiceId).collect();
        for (id, n) in services.iter().zip(&case.counts) {
            m.add_service(*id, format!("svc{}", id.0), None, *n);
            if let Some(policy) = case.policies.get(id.0 as usize) {
                m.set_policy(*id, *policy);
            }
        }
        let mut sim = Sim {
            m,
            services,
            now: Instant::now(),
            group_leader: case.group_leader,
            next_pid: 1000,
            live: BTreeMap::new(),
            dead: BTreeMap::new(),
            got: BTreeMap::new(),
            forked_all: BTreeSet::new(),
            reaped_all: BTreeSet::new(),
            last_reaped: None,
            forks: Vec::new(),
            expected: 0,
            fail_next: false,
            announced: BTreeSet::new(),
            stop: None,
            exit_by: None,
            fast: false,
            exit: None,
            steps: 0,
            watching_group: false,
        };
        sim.reset_epoch();
        sim
    }

    fn reset_epoch(&mut self) {
        self.forks.clear();
        // The limiter governs the services without a backoff.
        self.expected = self
            .services
            .iter()
            .filter(|s| !self.backs_off(**s))
            .map(|s| self.m.workers_of(*s).unwrap_or(0).max(0) as usize)
            .sum();
    }

    fn backs_off(&self, service: ServiceId) -> bool {
        self.m
            .policy_of(service)
            .is_some_and(|p| p.backoff.is_some())
    }

    fn feed(&mut self, event: Event) {
        if self.exit.is_some() {
            return;
        }
        self.steps += 1;
        assert!(self.steps < 100_000, "runaway: the machine never rests");
        let actions = self.m.step(event, self.now);
        self.check_ids();
        self.perform(actions);
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            if self.exit.is_some() {
                return;
            }
            match action {
                Action::Fork { service, worker } => self.fork(service, worker),
                Action::Signal { pids, sig } => {
                    for pid in pids {
                        assert!(
                            self.live.contains_key(&pid),
                            "signal {sig} to pid {pid}, which is no running worker"
                        );
                        self.got.entry(pid).or_default().push(sig);
                    }
                }
                Action::SignalGroup { sig } => {
                    assert!(self.group_leader, "killpg by a master that leads no group");
                    let pids: Vec<i32> = self.live.keys().copied().collect();
                    for pid in &pids {
                        self.got.entry(*pid).or_default().push(sig);
                    }
                    if sig == libc::SIGKILL {
                        self.kill_all(&pids);
                    }
                }
                Action::Kill { pids } => {
                    for pid in &pids {
                        assert!(
                            self.live.contains_key(pid),
                            "SIGKILL to pid {pid}, which is no running worker"
                        );
                        self.got.entry(*pid).or_default().push(libc::SIGKILL);
                    }
                    self.kill_all(&pids);
                }
                Action::WatchGroup => {
                    assert!(
                        self.group_leader,
                        "a group watched by a master that leads none"
                    );
                    self.watching_group = true;
                    self.check_group();
                }
                Action::Reap => {
                    for (pid, exit) in std::mem::take(&mut self.dead) {
                        let id = self.live.remove(&pid).expect("a dead worker was live");
                        self.reaped_all.insert(pid);
                        self.last_reaped = Some((id, exit));
                        self.feed(Event::ChildExited { pid, exit });
                        if self.announced.remove(&pid) {
                            let record = self.m.id_record(id.0, id.1);
                            assert!(
                                !record.is_some_and(|r| r.finished),
                                "an announced restart finished its id {id:?}"
                            );
                        }
                    }
                }
                Action::RunHooks(kind) => {
                    if kind == HookKind::Reload {
                        // The machine resets its limiter when they return.
                        self.reset_epoch();
                    }
                    self.feed(Event::HooksDone(kind));
                }
                Action::DeadWorkerHooks {
                    service,
                    worker,
                    code,
                } => {
                    let (id, exit) = self.last_reaped.expect("hooks of a reaped worker");
                    assert_eq!((service, worker, code), (id.0, id.1, exit.hook_code()));
                }
                Action::Log { text, .. } => {
                    if text == INT_LOG || text == DEADLINE_LOG {
                        self.fast = true;
                    }
                    if let Some(status) =
                        text.split("stopping the manager with exit status ").nth(1)
                    {
                        // A restart policy began a graceful stop.
                        assert!(self.stop.is_none(), "a policy stop during a stop");
                        self.stop = Some(Ending::Stopped {
                            status: status.parse().expect("a status"),
                        });
                        let t = self.m.graceful_timeout();
                        if !t.is_zero() {
                            self.exit_by =
                                Some(self.now + t + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE);
                        }
                    }
                }
                Action::Notify(_) | Action::WriteMetrics => {}
                Action::Exit(ending) => self.exited(ending),
            }
        }
    }

    fn fork(&mut self, service: ServiceId, worker: WorkerId) {
        // The limiter's bound (src/limiter.rs): the plan before fork n
        // (0-based since the last reset) sees the forks 0..n; when n > E
        // it drops the oldest of the last E+1, t[n-E-1], and either finds
        // it E seconds old or more (the fork goes at the plan's time or
        // later) or holds the fork TOO_FAST_DELAY after the plan, which
        // comes after t[n-1] >= t[n-E-1]. Each plan is followed by exactly
        // one fork (the timer forks only when planned, and a plan is only
        // dropped by a reset). So t[n] - t[n-E-1] >= min(E s, 5 s).
        let record = self.m.id_record(service, worker);
        assert!(
            !record.is_some_and(|r| r.finished),
            "a finished id forked: {service:?} {worker}"
        );
        if let Some(due) = record.and_then(|r| r.due) {
            assert!(self.now >= due, "forked before its backoff was over");
        }
        if self.backs_off(service) {
            // Outside the limiter.
            return self.forked_or_failed(service, worker);
        }
        self.forks.push(self.now);
        let n = self.forks.len() - 1;
        let e = self.expected;
        if n > e {
            let gap = self.now - self.forks[n - e - 1];
            let bound = Duration::from_secs(e as u64).min(crate::bindings::limiter::TOO_FAST_DELAY);
            assert!(
                gap >= bound,
                "fork {n} (E = {e}) {gap:?} after fork {}: the limiter allows {bound:?}",
                n - e - 1
            );
        }
        self.forked_or_failed(service, worker);
    }

    fn forked_or_failed(&mut self, service: ServiceId, worker: WorkerId) {
        if std::mem::take(&mut self.fail_next) {
            self.feed(Event::ForkFailed {
                error: "EAGAIN".into(),
            });
        } else {
            let pid = self.next_pid;
            self.next_pid += 1;
            self.live.insert(pid, (service, worker));
            self.forked_all.insert(pid);
            self.feed(Event::Forked { pid });
        }
    }

    fn exited(&mut self, ending: Ending) {
        self.exit = Some(ending);
        let expected = if self.fast {
            Some(Ending::FastExit)
        } else {
            self.stop
        };
        assert_eq!(Some(ending), expected, "how the stop ends");
        if let Some(by) = self.exit_by {
            assert!(
                self.now <= by,
                "Exit {:?} after its deadline",
                self.now - by
            );
        }
        match ending {
            Ending::Graceful | Ending::Interrupted | Ending::Stopped { .. } => {
                assert_eq!(self.m.pids().count(), 0, "workers left at {ending:?}");
                assert!(self.live.is_empty(), "workers left at {ending:?}");
                assert_eq!(self.forked_all, self.reaped_all, "a fork never reaped");
            }
            Ending::FastExit => {
                // Nothing outlives the master: what SIGINT left, SIGKILL
                // ended, and it was reaped.
                assert!(self.live.is_empty(), "workers left at the fast exit");
                assert_eq!(self.forked_all, self.reaped_all, "a fork never reaped");
            }
        }
    }

    /// SIGKILL: each of `pids` still alive dies at once.
    fn kill_all(&mut self, pids: &[i32]) {
        let mut any = false;
        for pid in pids {
            if !self.dead.contains_key(pid) {
                self.kill(*pid, Exit::Signal(libc::SIGKILL));
                any = true;
            }
        }
        if any {
            self.feed(Event::Signal(Sig::Chld));
        }
    }

    /// Reports the group gone once every worker ended (a zombie has).
    fn check_group(&mut self) {
        if self.watching_group && self.live.keys().all(|p| self.dead.contains_key(p)) {
            self.watching_group = false;
            self.feed(Event::GroupGone);
        }
    }

    /// No (service, worker id) runs twice; the machine's pids are ours.
    fn check_ids(&self) {
        let ids: BTreeSet<_> = self.live.values().collect();
        assert_eq!(
            ids.len(),
            self.live.len(),
            "a worker id runs twice: {:?}",
            self.live
        );
        if self.exit.is_none() {
            let pids: BTreeSet<i32> = self.m.pids().collect();
            assert_eq!(
                pids,
                self.live.keys().copied().collect(),
                "the machine's pids"
            );
        }
    }

    /// The loop sleeps: a stop with no worker left must have ended.
    fn check_idle(&self) {
        if self.exit.is_some() {
            return;
        }
        assert!(self.m.forking.is_none(), "a fork left under way");
        assert!(
            !(self.m.stopping() && self.m.pids().next().is_none()),
            "stopping with every worker gone, and no Exit"
        );
    }

    fn check_exit_by(&self) {
        if let (None, Some(by)) = (self.exit, self.exit_by) {
            assert!(
                self.now <= by,
                "no Exit {:?} after its deadline",
                self.now - by
            );
        }
    }

    /// Moves the clock to `target`, feeding the timer at each deadline on
    /// the way (and at once when one is already due).
    fn advance(&mut self, target: Instant) {
        while self.exit.is_none() {
            match self.m.deadline() {
                Some(d) if d <= target => {
                    self.now = self.now.max(d);
                    self.check_exit_by();
                    self.feed(Event::Timer);
                }
                _ => break,
            }
        }
        if self.exit.is_none() {
            self.now = self.now.max(target);
            self.check_exit_by();
        }
    }

    /// Notes the stop an event is to begin (SIGINT: `FastExit`; SIGTERM
    /// and `Stop`: `Graceful`; `Interrupted`), before it is fed: how it
    /// must end, and by when.
    fn stop_begins(&mut self, ending: Ending) {
        let supervising = matches!(self.m.phase, Phase::Supervising { .. });
        let stopping = matches!(self.m.phase, Phase::Stopping { .. });
        match ending {
            Ending::FastExit if supervising || stopping => {
                let by = self.now + FAST_EXIT_GRACE;
                self.exit_by = Some(self.exit_by.map_or(by, |b| b.min(by)));
                self.stop.get_or_insert(Ending::FastExit);
            }
            Ending::Graceful | Ending::Interrupted if supervising => {
                self.stop = Some(ending);
                let t = self.m.graceful_timeout();
                if !t.is_zero() {
                    self.exit_by = Some(self.now + t + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE);
                }
            }
            _ => {}
        }
    }

    fn kill(&mut self, pid: i32, exit: Exit) {
        self.dead.insert(pid, exit);
        self.check_group();
    }

    /// The `pick`-th (modulo their number) worker that runs and did not end.
    fn pick_alive(&self, pick: usize) -> Option<i32> {
        let alive: Vec<i32> = self
            .live
            .keys()
            .filter(|p| !self.dead.contains_key(p))
            .copied()
            .collect();
        (!alive.is_empty()).then(|| alive[pick % alive.len()])
    }

    fn apply(&mut self, op: &Op) {
        if self.exit.is_some() {
            return;
        }
        match op {
            Op::Die { pick, exit } => {
                if let Some(pid) = self.pick_alive(*pick) {
                    self.kill(pid, *exit);
                    self.feed(Event::Signal(Sig::Chld));
                }
            }
            Op::Obey => {
                let told: Vec<(i32, i32)> = self
                    .live
                    .keys()
                    .filter(|p| !self.dead.contains_key(p))
                    .filter_map(|p| {
                        let got = self.got.get(p)?;
                        got.iter()
                            .find(|s| **s == TERM || **s == INT)
                            .map(|s| (*p, *s))
                    })
                    .collect();
                for (pid, sig) in &told {
                    self.kill(*pid, Exit::Signal(*sig));
                }
                if !told.is_empty() {
                    self.feed(Event::Signal(Sig::Chld));
                }
            }
            Op::Signal(sig) => {
                match sig {
                    Sig::Term => self.stop_begins(Ending::Graceful),
                    Sig::Int => self.stop_begins(Ending::FastExit),
                    Sig::Hup | Sig::Chld => {}
                }
                self.feed(Event::Signal(*sig));
            }
            Op::Scale { service, workers } => {
                let service = self.services[service % self.services.len()];
                let current = self.m.workers_of(service).expect("known service");
                let workers = (*workers).max(1 - current);
                assert!(self.m.check_scale(service, workers).is_ok());
                self.feed(Event::Command(Command::Scale { service, workers }));
                self.reset_epoch();
            }
            Op::Restart { service, worker } => {
                let service = self.services[service % self.services.len()];
                self.feed(Event::Command(Command::Restart {
                    service,
                    worker: *worker,
                }));
            }
            Op::ResetLimiter => {
                self.feed(Event::Command(Command::ResetLimiter));
                self.reset_epoch();
            }
            Op::Stop => {
                self.stop_begins(Ending::Graceful);
                self.feed(Event::Command(Command::Stop(StopCause::Requested)));
            }
            Op::Interrupted => {
                self.stop_begins(Ending::Interrupted);
                self.feed(Event::Interrupted);
            }
            Op::SetGracefulTimeout { secs } => self.feed(Event::Command(
                Command::SetGracefulTimeout(Duration::from_secs(*secs)),
            )),
            Op::Jump(d) => self.advance(self.now + ms(*d)),
            Op::FailNextFork => self.fail_next = true,
            Op::Announce { pick } => {
                if let Some(pid) = self.pick_alive(*pick) {
                    self.announced.insert(pid);
                    self.feed(Event::RestartAnnounced { pid });
                    self.kill(pid, Exit::Code(0));
                    self.feed(Event::Signal(Sig::Chld));
                }
            }
        }
        // Before the loop sleeps: a due timer is fed.
        self.advance(self.now);
        self.check_idle();
    }

    /// Runs a case: start, its ops, then a SIGTERM if still supervising;
    /// the workers then either hang (the deadline must end it) or obey.
    fn run(case: &Case) -> Sim {
        let mut sim = Sim::new(case);
        let actions = sim.m.step(start(case.group_leader, false), sim.now);
        assert_eq!(actions, vec![]);
        sim.advance(sim.now);
        for op in &case.ops {
            sim.apply(op);
        }
        if sim.exit.is_none() && matches!(sim.m.phase, Phase::Supervising { .. }) {
            sim.apply(&Op::Signal(Sig::Term));
        }
        if sim.exit.is_none() {
            match sim.exit_by {
                Some(by) if case.hang_at_end => sim.advance(by + Duration::from_secs(1)),
                _ => sim.apply(&Op::Obey),
            }
        }
        assert!(sim.exit.is_some(), "the stop never ended");
        sim
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every invariant is asserted inside the simulator, at each step:
    /// no worker id runs twice; the limiter's bound; signals only go to
    /// running workers; a stop ends by its deadline and as soon as its
    /// workers are gone; at a graceful or interrupted exit every forked
    /// worker was reaped; at a fast exit every one left got SIGINT.
    #[test]
    fn random_event_sequences_keep_the_invariants(case in case_strategy()) {
        Sim::run(&case);
    }
}

#[test]
fn the_simulator_reaches_the_limiter_and_every_ending() {
    // A fixed crash loop: E = 1, forks back to back, the limiter holds.
    let case = Case {
        counts: vec![1],
        group_leader: false,
        wait_ms: 10,
        graceful_secs: 60,
        ops: (0..20)
            .flat_map(|_| {
                [
                    Op::Die {
                        pick: 0,
                        exit: Exit::Code(1),
                    },
                    Op::Jump(10),
                ]
            })
            .chain([Op::Jump(5000)])
            .collect(),
        hang_at_end: true,
        policies: vec![],
    };
    let sim = Sim::run(&case);
    assert_eq!(sim.exit, Some(Ending::FastExit));
    assert!(sim.m.services[0].counters.limiter_waits > 0);
    let mut case = case;
    case.hang_at_end = false;
    assert_eq!(Sim::run(&case).exit, Some(Ending::Graceful));
    case.ops.push(Op::Interrupted);
    assert_eq!(Sim::run(&case).exit, Some(Ending::Interrupted));
    // Restart policies: the crash loop gives up; with `never` and stop on
    // exit the first death stops the manager with its status.
    use crate::policy::{Backoff, GiveUp, Restart};
    let backoff = Backoff::new(ms(10), ms(40)).jitter(0.5);
    case.policies = vec![crate::ServicePolicy::default()
        .backoff(backoff)
        .give_up(GiveUp::new(5, Duration::from_secs(10)))];
    let sim = Sim::run(&case);
    assert_eq!(
        sim.exit,
        Some(Ending::Stopped {
            status: crate::GIVE_UP_STATUS
        })
    );
    assert_eq!(sim.m.services[0].counters.limiter_waits, 0);
    assert!(sim.m.services[0].counters.backoff_waits >= 4);
    case.policies = vec![crate::ServicePolicy::default()
        .restart(Restart::Never)
        .stop_on_exit(true)];
    let sim = Sim::run(&case);
    assert_eq!(sim.exit, Some(Ending::Stopped { status: 1 }));
}

// ---- bugs found ---------------------------------------------------------------

/// An interrupted stop with no worker running (all dead, their respawn
/// held by the limiter) ends at once, as after SIGTERM's hooks. Found by
/// `random_event_sequences_keep_the_invariants` when it did not.
#[test]
fn interrupted_without_workers_exits_at_once() {
    let mut h = crash_loop_until_too_fast(Instant::now());
    assert_eq!(h.pids(), Vec::<i32>::new(), "the respawn is held 5 s");
    assert_eq!(
        h.step(Event::Interrupted),
        vec![debug(FINISH), exit(Ending::Interrupted)]
    );
}

// ---- systemd ------------------------------------------------------------------

#[test]
fn systemd_hears_ready_again_after_a_refused_reload() {
    let t0 = Instant::now();
    let mut h = H::new(t0, 1);
    h.step(start(false, true));
    assert_eq!(h.step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.step(forked(100)), vec![]);
    let hup = h.at(1000).step(Event::Signal(Sig::Hup));
    assert!(
        matches!(&hup[..], [Action::Notify(n), Action::RunHooks(RELOAD)] if n[0] == Notice::Reloading)
    );
    let refused = h.step(Event::ReloadRefused {
        reason: "bad config".into(),
    });
    assert_eq!(refused[0], error(REFUSED));
    assert!(
        matches!(&refused[1..], [Action::Notify(n)] if n[0] == Notice::Ready),
        "{refused:?}"
    );
}

#[test]
fn systemd_hears_start_status_reload_stop_and_the_watchdog() {
    let t0 = Instant::now();
    let mut h = H::new(t0, 2);
    let wd = Event::Start {
        group_leader: false,
        notify: true,
        watchdog: Some(ms(200)),
    };
    assert_eq!(
        h.step(wd),
        vec![notify(&[
            Notice::Ready,
            Notice::Watchdog,
            status("svc: 0/2 workers")
        ])]
    );
    // The first fork at once; its STATUS= waits for STATUS_EVERY.
    assert_eq!(h.step(Event::Timer), vec![fork(0)]);
    assert_eq!(h.step(forked(100)), vec![]);
    assert_eq!(h.at(10).step(Event::Timer), vec![fork(1)]);
    assert_eq!(h.step(forked(101)), vec![]);
    assert_eq!(h.deadline_ms(), Some(100), "the watchdog first");
    assert_eq!(
        h.at(100).step(Event::Timer),
        vec![notify(&[Notice::Watchdog])]
    );
    assert_eq!(h.deadline_ms(), Some(200), "then the watchdog again");
    assert_eq!(
        h.at(200).step(Event::Timer),
        vec![notify(&[Notice::Watchdog])]
    );
    assert_eq!(h.deadline_ms(), Some(250), "then the status");
    assert_eq!(
        h.at(250).step(Event::Timer),
        vec![notify(&[status("svc: 2/2 workers")])]
    );
    // Nothing changed: nothing more than the watchdog.
    assert_eq!(
        h.at(300).step(Event::Timer),
        vec![notify(&[Notice::Watchdog])]
    );
    assert_eq!(h.deadline_ms(), Some(400));
    // Reload: RELOADING=1 first, the hooks, the workers, then READY=1.
    assert_eq!(
        h.at(310).step(Event::Signal(Sig::Hup)),
        vec![
            notify(&[Notice::Reloading, status("reloading; svc: 2/2 workers")]),
            hooks(RELOAD)
        ]
    );
    assert_eq!(
        h.step(Event::HooksDone(RELOAD)),
        vec![
            kill(&[100, 101], HUP),
            notify(&[Notice::Ready, status("svc: 2/2 workers")])
        ]
    );
    // A death: the next status waits for STATUS_EVERY after the last.
    assert_eq!(h.at(320).step(exited(101, Exit::Code(1))).len(), 2);
    assert_eq!(h.step(Event::Timer), vec![fork(1)]);
    assert_eq!(h.step(forked(102)), vec![]);
    assert_eq!(
        h.at(400).step(Event::Timer),
        vec![notify(&[Notice::Watchdog])]
    );
    assert_eq!(h.deadline_ms(), Some(500), "no change to tell");
    // SIGTERM: STOPPING=1 first, with time for the whole stop.
    let stop = h.at(600).step(Event::Signal(Sig::Term));
    assert_eq!(
        stop,
        vec![
            notify(&[
                Notice::Stopping,
                Notice::ExtendTimeout(
                    GRACEFUL + WORKER_DEADLINE_GRACE + FAST_EXIT_GRACE + KILL_WAIT
                ),
                status("stopping: 2 workers left")
            ]),
            info(TERM_LOG),
            hooks(TERMINATE)
        ]
    );
    // SIGINT while stopping: no second STOPPING=1, more time for the kill.
    assert_eq!(
        h.step(Event::Signal(Sig::Int))[0],
        notify(&[
            Notice::ExtendTimeout(FAST_EXIT_GRACE + KILL_WAIT),
            status("exiting: 2 workers left")
        ])
    );
}

#[test]
fn sigint_tells_systemd_it_stops() {
    let mut h = H::new(Instant::now(), 1);
    h.step(start(false, true));
    assert_eq!(
        h.step(Event::Signal(Sig::Int)),
        vec![
            notify(&[
                Notice::Stopping,
                Notice::ExtendTimeout(FAST_EXIT_GRACE + KILL_WAIT),
                status("exiting: 0 workers left")
            ]),
            info(INT_LOG),
            exit(Ending::FastExit)
        ]
    );
}
