//! The restart policies' rules, a part of the machine (`machine.rs`):
//! what a worker's exit means under its service's [`ServicePolicy`],
//! when a backing-off id is due, and the stop a policy begins.
//!
//! Exits the engine caused (the worker got SIGTERM from the master) or
//! that the worker announced ([`Event::RestartAnnounced`]) are restarts:
//! respawned at once, counted by nothing. Only the other exits, while
//! supervising, count.

use std::time::{Duration, Instant};

use super::{log, Exit, Level, Machine, Phase, Service, StopCause, Worker};
use crate::policy::{status_of, Restart, GIVE_UP_STATUS};
use crate::{ServiceId, WorkerId};

/// What a worker's exit means for its id.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// The id is not started again.
    pub finished: bool,
    /// Its respawn waits this long (backoff).
    pub wait: Option<Duration>,
    /// This failure makes the service give up.
    pub give_up: bool,
}

impl Verdict {
    pub(crate) fn respawn(&self) -> bool {
        !self.finished
    }
}

impl Exit {
    /// The status a policy stop gives back for this exit.
    fn status(self) -> i32 {
        match self {
            Exit::Code(c) => status_of(Some(c), None),
            Exit::Signal(s) => status_of(None, Some(s)),
            Exit::Lost => status_of(None, None),
        }
    }
}

impl Machine {
    /// Seeds the backoff's jitter (the loop uses its pid and the time;
    /// tests keep the fixed default, so their waits replay).
    pub(crate) fn seed_jitter(&mut self, seed: u64) {
        self.rng = crate::policy::Rng::new(seed);
    }

    /// Sets the restart policy of `service` (checked by the caller).
    pub(crate) fn set_policy(&mut self, service: ServiceId, policy: crate::ServicePolicy) {
        let ids = &self.ids;
        if let Some(s) = self.services.iter_mut().find(|s| s.id == service) {
            s.policy = policy;
            // A finished id never comes back (see set_count).
            s.missing
                .retain(|w| !ids.get(&(service, *w)).is_some_and(|r| r.finished));
        }
    }

    /// The restart policy of `service`.
    pub(crate) fn policy_of(&self, service: ServiceId) -> Option<&crate::ServicePolicy> {
        self.service(service).map(|s| &s.policy)
    }

    /// When the respawn of worker `worker` of `service` is due, while its
    /// backoff holds it back (for systemd's `STATUS=` line: "worker 1
    /// restarting in 5s").
    pub(crate) fn restart_due(&self, service: ServiceId, worker: WorkerId) -> Option<Instant> {
        let s = self.service(service)?;
        if !s.missing.contains(&worker) {
            return None;
        }
        self.ids.get(&(service, worker))?.due
    }

    /// Why a restart policy stopped the manager, and the status it gives
    /// back.
    pub(crate) fn stopped_by(&self) -> Option<(i32, &str)> {
        self.policy_stop.as_ref().map(|(s, r)| (*s, r.as_str()))
    }

    /// How a graceful stop ends: as asked, or with a policy's status.
    pub(super) fn graceful_ending(&self) -> super::Ending {
        match &self.policy_stop {
            Some((status, _)) => super::Ending::Stopped { status: *status },
            None => super::Ending::Graceful,
        }
    }

    pub(super) fn restart_announced(&mut self, pid: i32) {
        if let Some(w) = self.workers.get_mut(&pid) {
            w.restarting = true;
        }
    }

    /// Judges worker `w`'s exit under its service's policy, and keeps the
    /// books: failures, the give-up window, the backoff's streak and due
    /// time, finished ids.
    pub(super) fn judge(&mut self, w: &Worker, exit: Exit, now: Instant) -> Verdict {
        let engine_caused = w.stopping || w.restarting;
        if engine_caused || !matches!(self.phase, Phase::Supervising { .. }) {
            return Verdict::default();
        }
        let Some(s) = self.services.iter_mut().find(|s| s.id == w.service) else {
            return Verdict::default();
        };
        if w.worker >= s.count() {
            // Not wanted any more: not respawned anyway.
            return Verdict::default();
        }
        let policy = s.policy;
        let record = self.ids.entry((w.service, w.worker)).or_default();
        let failed = exit != Exit::Code(0);
        let mut verdict = Verdict::default();
        if failed {
            record.failures += 1;
            s.counters.failures += 1;
            if let Some(rule) = &policy.give_up {
                verdict.give_up = s.failures.record(now, rule);
            }
        }
        let respawn = match policy.restart {
            Restart::Always => true,
            Restart::OnFailure => failed,
            Restart::Never => false,
        };
        if !respawn {
            record.finished = true;
            if failed {
                s.final_failure = Some(exit.status());
            }
            verdict.finished = true;
        } else if let Some(backoff) = &policy.backoff {
            if now.saturating_duration_since(w.started) >= backoff.stable {
                record.streak = 0;
            }
            record.streak = record.streak.saturating_add(1);
            let wait = backoff.delay(record.streak, self.rng.unit());
            record.due = Some(now + wait);
            s.counters.backoff_waits += 1;
            verdict.wait = Some(wait);
        }
        verdict
    }

    /// Says what the verdict on `w` means, and stops the manager when the
    /// policy says so (supervising only).
    pub(super) fn apply(
        &mut self,
        w: &Worker,
        verdict: Verdict,
        now: Instant,
        out: &mut Vec<super::Action>,
    ) {
        let Some(s) = self.service(w.service) else {
            return;
        };
        let (name, policy) = (s.name.clone(), s.policy);
        if let Some(wait) = verdict.wait {
            out.push(log(
                Level::Info,
                format!(
                    "Worker {} of service {name} restarting in {:.3}s (backoff)",
                    w.worker,
                    wait.as_secs_f64()
                ),
            ));
        }
        if verdict.finished {
            out.push(log(
                Level::Info,
                format!(
                    "Worker {} of service {name} finished (restart policy {})",
                    w.worker, policy.restart
                ),
            ));
        }
        if verdict.give_up {
            let rule = policy
                .give_up
                .unwrap_or(crate::GiveUp::new(1, Duration::MAX));
            let reason = format!(
                "Service {name} gave up: {} failures within {}s",
                rule.failures,
                rule.window.as_secs_f64()
            );
            return self.stop_by_policy(GIVE_UP_STATUS, reason, now, out);
        }
        // Once an id finished, the service's last exit (whatever caused
        // it: the last worker may have been scaled down) leaves it empty.
        if policy.stop_on_exit && self.any_finished(w.service) && self.has_no_worker(w.service) {
            let status = self
                .service(w.service)
                .and_then(|s| s.final_failure)
                .unwrap_or(0);
            let reason = format!("Service {name} has no worker left (stop on exit)");
            self.stop_by_policy(status, reason, now, out);
        }
    }

    /// Logs why, then stops gracefully, as `shutdown()` does.
    fn stop_by_policy(
        &mut self,
        status: i32,
        reason: String,
        now: Instant,
        out: &mut Vec<super::Action>,
    ) {
        let level = if status == 0 {
            Level::Info
        } else {
            Level::Error
        };
        out.push(log(
            level,
            format!("{reason}: stopping the manager with exit status {status}"),
        ));
        self.policy_stop = Some((status, reason));
        self.graceful_stop(Some(StopCause::Policy), now, out);
    }

    /// An id of `service` finished.
    fn any_finished(&self, service: ServiceId) -> bool {
        self.ids
            .iter()
            .any(|((s, _), r)| *s == service && r.finished)
    }

    /// No process of `service` runs and none waits for its respawn.
    fn has_no_worker(&self, service: ServiceId) -> bool {
        self.service(service).is_some_and(|s| s.missing.is_empty())
            && !self.workers.values().any(|w| w.service == service)
    }

    /// Where `service` stands among the services (they start in order).
    pub(super) fn position(&self, service: ServiceId) -> usize {
        self.services
            .iter()
            .position(|s| s.id == service)
            .unwrap_or(usize::MAX)
    }

    /// A service with a backoff still has an id never started.
    pub(super) fn first_starts_left(&self) -> bool {
        self.services
            .iter()
            .filter(|s| s.policy.backoff.is_some())
            .any(|s| {
                s.missing
                    .iter()
                    .any(|w| self.ids.get(&(s.id, *w)).map_or(true, |r| r.forks == 0))
            })
    }

    /// When an id of a service with a backoff may be forked: its wait
    /// over, and `wait_interval` after the last fork. `None`: at once.
    fn backoff_fork_at(&self, s: &Service, worker: WorkerId) -> Option<Instant> {
        let due = self.ids.get(&(s.id, worker)).and_then(|r| r.due);
        let spaced = self.last_fork.map(|t| t + self.wait_interval);
        // `None` is below every `Some`: the later of the two known.
        due.max(spaced)
    }

    /// The id of a service with a backoff to fork now, if one is due.
    pub(super) fn backoff_due(&self, now: Instant) -> Option<(ServiceId, WorkerId)> {
        self.services
            .iter()
            .filter(|s| s.policy.backoff.is_some())
            .find_map(|s| {
                s.missing
                    .iter()
                    .find(|w| self.backoff_fork_at(s, **w).map_or(true, |t| t <= now))
                    .map(|w| (s.id, *w))
            })
    }

    /// When the next id of a service with a backoff may be forked
    /// (`now` when one may go at once).
    pub(super) fn plan_backoff(&mut self, now: Instant) {
        let this = &*self;
        let at = this
            .services
            .iter()
            .filter(|s| s.policy.backoff.is_some())
            .flat_map(|s| {
                s.missing
                    .iter()
                    .map(move |w| this.backoff_fork_at(s, *w).unwrap_or(now).max(now))
            })
            .min();
        self.backoff_at = at;
    }
}

#[cfg(test)]
#[path = "machine_policy_tests.rs"]
mod tests;
