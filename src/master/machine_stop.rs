//! The stops, a part of the machine (`machine.rs`): the graceful stop and
//! its deadline, SIGINT's fast exit, the SIGKILL of what is left and the
//! wait for the process group, and how a stop ends.

use std::time::Instant;

use super::{
    log, Action, Drain, Ending, HookKind, Level, Machine, Phase, StopCause, KILL_WAIT,
    WORKER_DEADLINE_GRACE,
};
use crate::notify::Notice;

impl Machine {
    pub(super) fn sigint(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Supervising { .. } | Phase::Stopping { .. } => self.fast_exit(
                "Caught SIGINT signal, instantaneous exiting",
                false,
                now,
                out,
            ),
            Phase::Ready { .. } | Phase::FastExit { .. } | Phase::Done => {}
        }
    }

    /// SIGINT to every worker (to the whole group when the master leads
    /// it), `kill_grace` for them to go, then SIGKILL to what is left;
    /// exit 1 once all of it is gone.
    pub(super) fn fast_exit(
        &mut self,
        reason: &str,
        by_deadline: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let first = !self.stopping();
        self.phase = Phase::FastExit {
            until: now + self.kill_grace,
            by_deadline,
            killed: false,
            group_gone: !self.group_leader,
        };
        let mut notices = if first {
            vec![Notice::Stopping]
        } else {
            Vec::new()
        };
        notices.push(Notice::ExtendTimeout(self.kill_grace + KILL_WAIT));
        self.tell(notices, now, out);
        out.push(log(Level::Info, reason.to_string()));
        if self.group_leader {
            out.push(Action::SignalGroup { sig: libc::SIGINT });
        } else {
            let pids = self.sorted_pids();
            if !pids.is_empty() {
                out.push(Action::Signal {
                    pids,
                    sig: libc::SIGINT,
                });
            }
        }
        self.maybe_finish(out);
    }

    /// `kill_grace` after the fast exit's SIGINT: SIGKILL to the workers
    /// and the process group, then a last wait for them to be gone.
    pub(super) fn kill_the_rest(&mut self, by_deadline: bool, now: Instant, out: &mut Vec<Action>) {
        let pids = self.sorted_pids();
        let mut what = Vec::new();
        if !pids.is_empty() {
            let list: Vec<String> = pids.iter().map(i32::to_string).collect();
            what.push(format!("workers {}", list.join(", ")));
        }
        if self.group_leader {
            what.push("the rest of the process group".to_string());
        }
        out.push(log(
            Level::Info,
            format!(
                "Still alive {} ms after SIGINT, killing with SIGKILL: {}",
                self.kill_grace.as_millis(),
                what.join(" and ")
            ),
        ));
        self.phase = Phase::FastExit {
            until: now + KILL_WAIT,
            by_deadline,
            killed: true,
            group_gone: !self.group_leader,
        };
        if !pids.is_empty() {
            out.push(Action::Kill { pids });
        }
        if self.group_leader {
            out.push(Action::SignalGroup { sig: libc::SIGKILL });
        }
        self.maybe_finish(out);
    }

    /// The process group has no live member but the master.
    pub(super) fn group_gone(&mut self, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Stopping {
                draining: Some(_),
                interrupted,
                ..
            } => self.finish_graceful(interrupted, out),
            Phase::FastExit {
                until,
                by_deadline,
                killed,
                group_gone: false,
            } => {
                self.phase = Phase::FastExit {
                    until,
                    by_deadline,
                    killed,
                    group_gone: true,
                };
                self.maybe_finish(out);
            }
            _ => {}
        }
    }

    /// Begins a graceful stop: for `cause`, or for the application
    /// (interrupted) when `None`.
    pub(super) fn graceful_stop(
        &mut self,
        cause: Option<StopCause>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let interrupted = cause.is_none();
        match self.phase {
            Phase::Ready { .. } if !interrupted => {
                // shutdown() before run(): stop as soon as it starts.
                self.phase = Phase::Ready { stop_asked: cause };
                return;
            }
            Phase::Supervising { .. } => {}
            _ => return,
        }
        // The terminate hooks run under the graceful timeout; the workers
        // then get theirs (see `workers_deadline`).
        let deadline = if interrupted {
            self.workers_deadline(now)
        } else {
            (!self.graceful_timeout.is_zero()).then(|| now + self.graceful_timeout)
        };
        self.phase = Phase::Stopping {
            deadline,
            interrupted,
            hooks_done: interrupted,
            draining: None,
        };
        let mut notices = vec![Notice::Stopping];
        notices.extend(self.stop_extension(now));
        self.tell(notices, now, out);
        if interrupted {
            // Stopped for the application: no hooks, no log lines.
            self.stop_all(out);
            self.maybe_finish(out);
        } else {
            let cause = cause.unwrap_or(StopCause::Sigterm);
            out.push(log(Level::Info, cause.line().into()));
            out.push(Action::RunHooks(HookKind::Terminate));
        }
    }

    /// The deadline of workers told to stop at `now`: their own graceful
    /// timeout, which runs from their SIGTERM, and a moment for them to
    /// exit after it. `None` when the timeout is 0 (forever).
    pub(super) fn workers_deadline(&self, now: Instant) -> Option<Instant> {
        (!self.graceful_timeout.is_zero())
            .then(|| now + self.graceful_timeout + WORKER_DEADLINE_GRACE)
    }

    /// `EXTEND_TIMEOUT_USEC=` for the rest of a graceful stop seen from
    /// `now` (up to the deadline, the kill grace and the kill's wait), so
    /// that systemd's own stop timeout does not cut it short; none without
    /// a deadline.
    pub(super) fn stop_extension(&self, now: Instant) -> Option<Notice> {
        let Phase::Stopping {
            deadline: Some(d), ..
        } = self.phase
        else {
            return None;
        };
        let end = self.workers_deadline(now).map_or(d, |w| w.max(d));
        Some(Notice::ExtendTimeout(
            end.saturating_duration_since(now) + self.kill_grace + KILL_WAIT,
        ))
    }

    /// SIGTERM to every worker not already told.
    pub(super) fn stop_all(&mut self, out: &mut Vec<Action>) {
        let pids = self.sorted_pids();
        for pid in &pids {
            if let Some(w) = self.workers.get_mut(pid) {
                w.stopping = true;
            }
        }
        if !pids.is_empty() {
            out.push(Action::Signal {
                pids,
                sig: libc::SIGTERM,
            });
        }
    }

    /// Ends a stop once every worker is gone (and, for a graceful one,
    /// its hooks ran): the last one reaped, no fork under way, and the
    /// rest of the process group gone too.
    pub(super) fn maybe_finish(&mut self, out: &mut Vec<Action>) {
        if !self.workers.is_empty() || self.forking.is_some() {
            return;
        }
        match self.phase {
            Phase::FastExit {
                group_gone: true, ..
            } => self.finish(Ending::FastExit, out),
            // The workers are gone; what they left in the group is
            // watched only now (reading the group costs a pass over
            // /proc: not once per worker of thousands).
            Phase::FastExit { .. } => out.push(Action::WatchGroup),
            Phase::Stopping {
                deadline,
                interrupted,
                hooks_done: true,
                draining: None,
            } => {
                if self.group_leader {
                    // What the workers left behind (their own children)
                    // goes with them: the rest of the process group gets
                    // SIGTERM too, and `kill_grace` later SIGKILL (a
                    // child that inherited a handler may never take
                    // SIGTERM); the stop ends once it is gone.
                    self.phase = Phase::Stopping {
                        deadline,
                        interrupted,
                        hooks_done: true,
                        draining: Some(Drain {
                            until: self.now + self.kill_grace,
                            killed: false,
                        }),
                    };
                    out.push(Action::SignalGroup { sig: libc::SIGTERM });
                    out.push(Action::WatchGroup);
                } else {
                    self.finish_graceful(interrupted, out);
                }
            }
            _ => {}
        }
    }

    pub(super) fn finish_graceful(&mut self, interrupted: bool, out: &mut Vec<Action>) {
        out.push(log(Level::Debug, "Shutdown finish".into()));
        self.finish(
            if interrupted {
                Ending::Interrupted
            } else {
                self.graceful_ending()
            },
            out,
        );
    }

    pub(super) fn finish(&mut self, ending: Ending, out: &mut Vec<Action>) {
        self.phase = Phase::Done;
        self.armed = None;
        out.push(Action::Exit(ending));
    }
}
