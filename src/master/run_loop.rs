//! The master's I/O loop: single-threaded, it waits in one `poll()` on the
//! self-pipe (signals, handles, Python's wakeup fd) with the machine's
//! timer as timeout, turns what woke it into events for the machine, and
//! performs the actions the machine returns. It holds no rule of its own.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, Pid};

use super::handle::Shared;
use super::machine::{Action, Ending, Event, Exit, HookKind, Level};
use super::ManagerHandle;
use super::{ForkOutcome, ServiceManager, WorkerHandover};
use crate::control::{ControlServer, Limits};
use crate::hooks::{first_refusal, run_each};
use crate::logging::{panic_message, CONTROL, MANAGER};
use crate::notify::{Notice, Notifier, SYSTEMD_VARS};
use crate::signals::{Sig, SignalFlags};
use crate::worker::{self, WorkerContext};
use crate::{sys, Error, ServiceId, WorkerId};

/// The state of one `run()` that is not the machine's: fds, signal flags,
/// and what the reaper knows.
struct Loop<'m> {
    m: &'m mut ServiceManager,
    shared: Arc<Shared>,
    signals: SignalFlags,
    death_r: OwnedFd,
    death_w: OwnedFd,
    /// Workers write their pid here before they end to restart
    /// (`worker::announce_restart`); read before each exit is fed.
    announce: (OwnedFd, OwnedFd),
    master: Pid,
    /// The application took a worker's exit status at least once.
    statuses_taken: bool,
    /// Application code ran on the loop's thread (and so may have reaped
    /// a worker, or started a thread that may) since the children list was
    /// last read. True at the start: the application ran before `run()`.
    app_ran: bool,
    /// The process was seen with another thread than this one. A thread
    /// can take a worker's status and end before the next look, so once
    /// one was seen the children list is always read.
    threads_seen: bool,
    /// Emptied action lists, kept for the next steps: after each fork,
    /// every page the master writes is copied for it (the new worker
    /// shares them all), and a list allocated and freed per step writes
    /// the allocator's pages besides its own.
    spare: Vec<Vec<Action>>,
    /// The control socket, when enabled.
    control: Option<ControlServer>,
    metrics_file: Option<PathBuf>,
    /// systemd's notify socket, when set and the setting is on.
    notifier: Option<Notifier>,
    /// The process group being watched for [`Event::GroupGone`].
    group: Option<GroupWatch>,
}

/// The live members of the master's process group, each watched through a
/// pidfd (readable once it ended); when one ends, the group is read again.
struct GroupWatch {
    fds: Vec<OwnedFd>,
    /// A member ended (or pidfds are unavailable): read the group again.
    changed: bool,
    /// Without pidfds (kernels before 5.3): when to read it again.
    rescan_at: Option<Instant>,
}

/// At most this many pidfds: a group of thousands is read again when any
/// of these ends (all of them must end anyway).
const GROUP_WATCH_FDS: usize = 256;

/// How often the group is read again where pidfds are unavailable.
const GROUP_RESCAN: std::time::Duration = std::time::Duration::from_millis(20);

pub(super) fn run(m: &mut ServiceManager) -> Result<(), Error> {
    worker::set_exit_hook(m.on_exit.clone());
    let shared = Arc::clone(&m.shared);
    let signals = SignalFlags::register(shared.wake_w.as_raw_fd())?;
    let (death_r, death_w) = sys::cloexec_pipe()?;
    let announce = sys::nonblocking_pipe()?;
    let control = match m.settings.control_socket_path() {
        Some(path) => Some(ControlServer::bind(&path, Limits::default())?),
        None => None,
    };
    let metrics_file = m.settings.metrics_file_path();
    if metrics_file.is_some() {
        let every = m.settings.metrics_interval;
        shared.lock().machine.write_metrics_every(every);
    }
    let master = getpid();
    // systemd's variables are read once, here; workers never see them.
    let notifier = if m.settings.notify_systemd {
        Notifier::from_env(master.as_raw() as u32)
    } else {
        None
    };
    let mut lp = Loop {
        m,
        shared,
        signals,
        death_r,
        death_w,
        announce,
        master,
        statuses_taken: false,
        app_ran: true,
        threads_seen: false,
        spare: Vec::new(),
        control,
        metrics_file,
        notifier,
        group: None,
    };
    // The backoff's jitter differs from one master to the next.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(master.as_raw().unsigned_abs()) << 32);
    lp.shared.lock().machine.seed_jitter(seed);
    let group_leader = getpgrp() == master;
    let notify = lp.notifier.is_some();
    let watchdog = lp.notifier.as_ref().and_then(|n| n.watchdog);
    if let Some(ending) = lp.feed(Event::Start {
        group_leader,
        notify,
        watchdog,
    }) {
        return lp.end(ending);
    }
    let mut first_wakeup = true;
    loop {
        // As in workers: the callback (the Python face's entry into the
        // interpreter) when someone else wrote to the pipe, and once at
        // the start; a worker's death then costs no interpreter round
        // trip before the respawn.
        let foreign = sys::drain(lp.shared.wake_r.as_raw_fd(), |b| lp.signals.echoes(b));
        if std::mem::take(&mut first_wakeup) || foreign {
            if let Some(hook) = lp.m.on_wakeup.as_mut() {
                lp.app_ran = true;
                if hook().is_some() {
                    if let Some(ending) = lp.feed(Event::Interrupted) {
                        return lp.end(ending);
                    }
                }
            }
        }
        // Everything that happened, until nothing is left to do now.
        loop {
            let ending = match lp.next_event() {
                Some(event) => lp.feed(event),
                None => lp.perform_pending(),
            };
            if let Some(ending) = ending {
                return lp.end(ending);
            }
            if !lp.busy() {
                break;
            }
        }
        lp.wait();
    }
}

impl Loop<'_> {
    /// The next event to feed, signals first (SIGINT before all), then the
    /// timer. `None` when nothing happened.
    fn next_event(&mut self) -> Option<Event> {
        for sig in [Sig::Int, Sig::Chld, Sig::Term, Sig::Hup] {
            if self.signals.take(sig) {
                return Some(Event::Signal(sig));
            }
        }
        if self.timer_due() {
            return Some(Event::Timer);
        }
        if self.group_changed() {
            return Some(Event::GroupGone);
        }
        None
    }

    /// Starts watching the process group: whether it is gone already.
    fn watch_group(&mut self) -> bool {
        let members = sys::live_group_members(self.master.as_raw());
        let mut watch = GroupWatch {
            fds: Vec::new(),
            changed: false,
            rescan_at: None,
        };
        for pid in members.iter().take(GROUP_WATCH_FDS) {
            match sys::pidfd_open(*pid) {
                Ok(fd) => watch.fds.push(fd),
                // Gone since the read: read again at once.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => watch.changed = true,
                Err(_) => watch.rescan_at = Some(Instant::now() + GROUP_RESCAN),
            }
        }
        if members.is_empty() {
            self.group = None;
            return true;
        }
        self.group = Some(watch);
        false
    }

    /// Whether the watched group is gone now (read again when a member
    /// ended); the watch ends then.
    fn group_changed(&mut self) -> bool {
        let Some(watch) = &self.group else {
            return false;
        };
        let due = watch.changed || watch.rescan_at.is_some_and(|t| Instant::now() >= t);
        due && self.watch_group()
    }

    fn group_due(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|w| w.changed || w.rescan_at.is_some_and(|t| Instant::now() >= t))
    }

    fn timer_due(&self) -> bool {
        let deadline = self.shared.lock().machine.deadline();
        deadline.is_some_and(|t| Instant::now() >= t)
    }

    /// Whether something is waiting to be done without sleeping.
    fn busy(&self) -> bool {
        self.signals.any_pending()
            || self.timer_due()
            || self.group_due()
            || !self.shared.lock().pending.is_empty()
    }

    /// Steps the machine with `event` and performs what it says.
    fn feed(&mut self, event: Event) -> Option<Ending> {
        let mut actions = self.spare.pop().unwrap_or_default();
        {
            let mut core = self.shared.lock();
            // What handles asked before this event goes first.
            actions.append(&mut core.pending);
            core.machine.step_into(event, Instant::now(), &mut actions);
        }
        self.perform(actions)
    }

    /// Performs the actions steps made outside the loop.
    fn perform_pending(&mut self) -> Option<Ending> {
        let mut actions = self.spare.pop().unwrap_or_default();
        actions.append(&mut self.shared.lock().pending);
        self.perform(actions)
    }

    /// Performs `actions`, then keeps the emptied list for a next step.
    fn perform(&mut self, mut actions: Vec<Action>) -> Option<Ending> {
        let ending = self.perform_each(&mut actions);
        actions.clear();
        self.spare.push(actions);
        ending
    }

    fn perform_each(&mut self, actions: &mut Vec<Action>) -> Option<Ending> {
        for action in actions.drain(..) {
            let ending = match action {
                Action::Fork { service, worker } => {
                    let event = self.fork(service, worker);
                    self.feed(event)
                }
                Action::Signal { pids, sig } => {
                    let sig = Signal::try_from(sig).ok();
                    for pid in pids {
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                    None
                }
                Action::SignalGroup { sig } => {
                    signal_group(self.master, sig);
                    None
                }
                Action::Reap => self.reap(),
                Action::RunHooks(kind) => {
                    self.m.adopt_added_hooks();
                    let hooks = &mut self.m.hooks;
                    let mut done = Event::HooksDone(kind);
                    match kind {
                        HookKind::Terminate => {
                            run_each("terminate", "", &mut hooks.terminate, |h| h());
                            self.app_ran |= !hooks.terminate.is_empty();
                        }
                        HookKind::Reload => {
                            self.app_ran |= !hooks.reload_check.is_empty();
                            // The checks first: one that refuses ends the
                            // reload before the reload hooks.
                            match first_refusal(&mut hooks.reload_check) {
                                Some(reason) => done = Event::ReloadRefused { reason },
                                None => {
                                    run_each("reload", "", &mut hooks.reload, |h| h());
                                    self.app_ran |= !hooks.reload.is_empty();
                                }
                            }
                        }
                    }
                    self.feed(done)
                }
                Action::DeadWorkerHooks {
                    service,
                    worker,
                    code,
                } => {
                    self.m.adopt_added_hooks();
                    let hooks = &mut self.m.hooks.dead_worker;
                    self.app_ran |= !hooks.is_empty();
                    // Formatted only if a hook fails: not on each death.
                    let name: &dyn std::fmt::Display = match self.m.entries.get(&service) {
                        Some(e) => &e.name,
                        None => &service,
                    };
                    let about = format_args!(" (service {name}, worker {worker})");
                    run_each("dead_worker", about, hooks, |h| h(service, worker, code));
                    None
                }
                Action::Log { level, text } => {
                    match level {
                        Level::Debug => log::debug!(target: MANAGER, "{text}"),
                        Level::Info => log::info!(target: MANAGER, "{text}"),
                        Level::Error => log::error!(target: MANAGER, "{text}"),
                    }
                    None
                }
                Action::Notify(notices) => {
                    self.tell_systemd(&notices);
                    None
                }
                Action::Kill { pids } => {
                    kill_trees(&pids);
                    None
                }
                Action::WatchGroup => {
                    if self.watch_group() {
                        self.feed(Event::GroupGone)
                    } else {
                        None
                    }
                }
                Action::WriteMetrics => {
                    self.write_metrics();
                    None
                }
                Action::Exit(ending) => Some(ending),
            };
            if ending.is_some() {
                return ending;
            }
        }
        None
    }

    /// Sends `notices` to systemd; a failure is logged at DEBUG, as the
    /// contract says of `READY=1`.
    fn tell_systemd(&self, notices: &[Notice]) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        match notifier.send(notices) {
            Ok(()) => {
                if notices.contains(&Notice::Ready) {
                    self.shared.told_ready();
                }
            }
            Err(e) => log::debug!(target: MANAGER, "Systemd notification failed: {e}"),
        }
    }

    fn end(mut self, ending: Ending) -> Result<(), Error> {
        // The socket file goes with the master, however it ends.
        drop(self.control.take());
        match ending {
            Ending::Graceful => Ok(()),
            Ending::Interrupted => Err(Error::Interrupted),
            Ending::FastExit => worker::exit(1),
            Ending::Stopped { status: 0 } => Ok(()),
            Ending::Stopped { status } => {
                let reason = self
                    .shared
                    .lock()
                    .machine
                    .stopped_by()
                    .map_or_else(String::new, |(_, r)| r.to_string());
                Err(Error::Stopped { status, reason })
            }
        }
    }

    /// Forks worker `worker` of `service` through the face's wrapper; in
    /// the child, becomes the worker and never returns.
    fn fork(&mut self, service: ServiceId, worker: WorkerId) -> Event {
        // The new worker runs the new-worker hooks added so far.
        self.m.adopt_added_hooks();
        let default_timeout = self.shared.lock().machine.graceful_timeout();
        let mask = sys::block_all_signals();
        let mut once = Some(());
        let mut call = || {
            if once.take().is_none() {
                return Err(io::Error::other("the fork wrapper forked twice"));
            }
            match sys::fork_raw()? {
                sys::Forked::Parent(pid) => Ok(ForkOutcome::Parent(pid.as_raw())),
                sys::Forked::Child => Ok(ForkOutcome::Child),
            }
        };
        let wrapper = &mut self.m.fork;
        let outcome = catch_unwind(AssertUnwindSafe(|| wrapper(&mut call)))
            .unwrap_or_else(|p| Err(io::Error::other(panic_message(&*p))));
        match outcome {
            Ok(ForkOutcome::Child) => {
                // In the new worker: the master's control socket closed (a
                // client must never reach a worker), a self-pipe of its own
                // and no signal seen yet, before any signal can be
                // delivered.
                drop(self.control.take());
                drop(self.notifier.take());
                drop(self.group.take());
                sys::strip_after_fork(&SYSTEMD_VARS);
                let renewed = sys::renew_pipe_in_place(
                    self.shared.wake_r.as_raw_fd(),
                    self.shared.wake_w.as_raw_fd(),
                );
                self.signals.clear();
                if let Err(e) = renewed {
                    log::error!(target: MANAGER, "Worker set-up failed: {e}");
                    worker::exit(1);
                }
                let entry = self
                    .m
                    .entries
                    .get_mut(&service)
                    .expect("the machine only forks known services");
                if let Some(exec) = entry.exec.as_mut() {
                    // A worker in a new program: the signals stay blocked
                    // across the exec, pending, until its handlers are in.
                    let identity = WorkerHandover {
                        service,
                        worker,
                        master: self.master.as_raw(),
                        death_fd: self.death_r.as_raw_fd(),
                        announce_fd: self.announce.1.as_raw_fd(),
                        graceful_shutdown_timeout: default_timeout,
                    };
                    let e = super::exec::exec_worker(exec, &identity);
                    log::error!(
                        target: MANAGER,
                        "Cannot start worker {worker} of {} in a new program: {e}",
                        entry.name
                    );
                    worker::exit(1);
                }
                sys::restore_signal_mask(&mask);
                worker::run(WorkerContext {
                    service_id: service,
                    worker_id: worker,
                    name: &entry.name,
                    factory: &mut entry.factory,
                    new_worker_hooks: &mut self.m.hooks.new_worker,
                    default_timeout,
                    master: self.master,
                    death_r: self.death_r.as_fd(),
                    death_w: self.death_w.as_raw_fd(),
                    announce: (self.announce.0.as_raw_fd(), self.announce.1.as_raw_fd()),
                    wake_r: self.shared.wake_r.as_fd(),
                    signals: &self.signals,
                    on_wakeup: self.m.on_wakeup.as_mut(),
                    titles: self.m.settings.titles,
                })
            }
            Ok(ForkOutcome::Parent(pid)) => {
                sys::restore_signal_mask(&mask);
                Event::Forked { pid }
            }
            Err(e) => {
                sys::restore_signal_mask(&mask);
                Event::ForkFailed {
                    error: e.to_string(),
                }
            }
        }
    }

    /// Collects every ended worker, feeding each to the machine.
    ///
    /// The common case costs O(1) per dead worker: `waitid(WNOWAIT)` names
    /// an ended child without reaping it, and it is reaped by pid if it is
    /// ours. A worker whose status the application took (a thread's or a
    /// hook's `waitpid(-1)`) is found missing from the kernel's list of
    /// this thread's children, and counted as gone. That list is read
    /// unless nobody else can have reaped: it is skipped only when this
    /// SIGCHLD brought a worker of ours, no theft was ever seen, we are not
    /// stopping, the process was never seen with another thread, and no
    /// application code (hooks, the wake-up callback, or anything before
    /// `run()`) ran on this one since the last read. Then no thread but this
    /// one existed at the last read, and none was started since: nobody
    /// else can have reaped.
    /// When an ended child of the application's own (which only it may
    /// reap) stands first, every worker is asked about by pid.
    fn reap(&mut self) -> Option<Ending> {
        // Whether ended workers may hide behind a child that is not ours.
        let mut hidden = false;
        let mut reaped = 0usize;
        loop {
            let peek = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(st) => match st.pid() {
                    Some(pid) => pid.as_raw(),
                    None => break,
                },
                Err(_) => break,
            };
            if !self.shared.lock().machine.contains(pid) {
                hidden = true;
                break;
            }
            match self.reap_one(pid) {
                Reaped::No => {
                    hidden = true;
                    break;
                }
                Reaped::Yes(None) => reaped += 1,
                Reaped::Yes(ending) => return ending,
            }
        }
        // The children list costs ~0.2 us per child: read it only when a
        // status may have been taken. A theft in the same wake as one of
        // our deaths would otherwise go unseen until some later SIGCHLD.
        // Only this thread can have started another since the last look,
        // and only while application code ran on it: no look otherwise
        // (reading /proc/self/stat on every wake-up was 8% of the
        // master's CPU per respawn).
        if !self.threads_seen && self.app_ran {
            self.threads_seen = sys::thread_count() != Some(1);
        }
        let stopping = self.shared.lock().machine.stopping();
        if !hidden
            && reaped > 0
            && !self.statuses_taken
            && !stopping
            && !self.app_ran
            && !self.threads_seen
        {
            return None;
        }
        self.app_ran = false;
        let children: Option<BTreeSet<i32>> = if hidden {
            None
        } else {
            sys::children_of_this_thread().map(|c| c.into_iter().collect())
        };
        let suspects: Vec<i32> = {
            let core = self.shared.lock();
            match children {
                Some(children) => core
                    .machine
                    .pids()
                    .filter(|p| !children.contains(p))
                    .collect(),
                // Ask about every worker.
                None => core.machine.pids().collect(),
            }
        };
        for pid in suspects {
            if let Reaped::Yes(Some(ending)) = self.reap_one(pid) {
                return Some(ending);
            }
        }
        None
    }

    /// Reaps worker `pid` if it ended, and feeds its end to the machine.
    fn reap_one(&mut self, pid: i32) -> Reaped {
        let exit = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Exit::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Exit::Signal(sig as i32),
            // Someone else (an application thread's waitpid(-1)) took
            // its status: it is gone all the same.
            Err(Errno::ECHILD) => {
                self.statuses_taken = true;
                Exit::Lost
            }
            _ => return Reaped::No,
        };
        // Its announcement, if it made one, was written before it ended:
        // it is in the pipe now.
        if let Some(ending) = self.take_announcements() {
            return Reaped::Yes(Some(ending));
        }
        Reaped::Yes(self.feed(Event::ChildExited { pid, exit }))
    }

    /// Feeds the restarts workers announced.
    fn take_announcements(&mut self) -> Option<Ending> {
        let bytes = sys::read_available(self.announce.0.as_raw_fd());
        for pid in bytes.chunks_exact(4) {
            let pid = i32::from_ne_bytes([pid[0], pid[1], pid[2], pid[3]]);
            if let Some(ending) = self.feed(Event::RestartAnnounced { pid }) {
                return Some(ending);
            }
        }
        None
    }
}

enum Reaped {
    No,
    Yes(Option<Ending>),
}

/// SIGKILL to each of `pids` and to every process it started (found
/// before any is killed: a killed parent's children go to a reaper).
fn kill_trees(pids: &[i32]) {
    let mut all: Vec<i32> = pids.to_vec();
    all.extend(sys::descendants(pids));
    for pid in all {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Sends `sig` to every other process of the master's process group, never
/// to the master itself: a signal that reached it after `run()` returned
/// would find no handler of ours. A member that forks while this runs has
/// its child caught by the next pass; passes stop when one finds nobody new.
fn signal_group(master: Pid, sig: i32) {
    if getpgrp() != master {
        return;
    }
    let Ok(sig) = Signal::try_from(sig) else {
        return;
    };
    let mut signalled = BTreeSet::new();
    // Each pass after the first only finds processes forked since the
    // previous one; a group that keeps forking is bounded by the passes.
    for _ in 0..16 {
        let fresh: Vec<i32> = sys::group_members(master.as_raw())
            .into_iter()
            .filter(|p| !signalled.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            let _ = kill(Pid::from_raw(pid), sig);
            signalled.insert(pid);
        }
    }
}

impl Loop<'_> {
    /// Sleeps until the self-pipe or a control connection is ready, or
    /// the machine's or the control socket's deadline; then serves the
    /// control socket.
    fn wait(&mut self) {
        let deadline = self.shared.lock().machine.deadline();
        let deadline = match (deadline, self.control.as_ref().and_then(|c| c.deadline())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = match (deadline, self.group.as_ref().and_then(|g| g.rescan_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (ready, member_ended): (Vec<(RawFd, PollFlags)>, bool) = {
            let mut fds = vec![PollFd::new(self.shared.wake_r.as_fd(), PollFlags::POLLIN)];
            if let Some(control) = &self.control {
                fds.extend(control.poll_fds());
            }
            let control_end = fds.len();
            if let Some(group) = &self.group {
                fds.extend(
                    group
                        .fds
                        .iter()
                        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
                );
            }
            let _ = nix::poll::poll(&mut fds, poll_timeout(deadline));
            let ended = fds[control_end..]
                .iter()
                .any(|f| f.revents().is_some_and(|r| !r.is_empty()));
            let ready = fds[1..control_end]
                .iter()
                .filter_map(|f| Some((f.as_fd().as_raw_fd(), f.revents()?)))
                .filter(|(_, r)| !r.is_empty())
                .collect();
            (ready, ended)
        };
        if member_ended {
            if let Some(group) = self.group.as_mut() {
                group.changed = true;
            }
        }
        if let Some(control) = self.control.as_mut() {
            let due = control.deadline().is_some_and(|d| Instant::now() >= d);
            if !ready.is_empty() || due {
                let handle = ManagerHandle {
                    shared: Arc::clone(&self.shared),
                };
                control.service(&ready, Instant::now(), &mut |request, peer| {
                    super::commands::answer(&handle, request, peer)
                });
            }
        }
    }

    /// Writes the metrics file; a failure is logged, not fatal.
    fn write_metrics(&self) {
        let Some(path) = &self.metrics_file else {
            return;
        };
        let text = crate::metrics::render(
            &ManagerHandle {
                shared: Arc::clone(&self.shared),
            }
            .status(),
        );
        if let Err(e) = crate::metrics::write_textfile(path, &text) {
            log::warn!(target: CONTROL, "Cannot write the metrics file: {e}");
        }
    }
}

/// The poll timeout that wakes at `until` (never just before it).
fn poll_timeout(until: Option<Instant>) -> PollTimeout {
    match until {
        None => PollTimeout::NONE,
        Some(t) => {
            let left = t.saturating_duration_since(Instant::now());
            // Round up so we never wake just before the deadline.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}
