//! The one line systemd shows for the master (`STATUS=`, in `systemctl
//! status`), in words an operator reads: for example
//! `api: 4/4 workers; jobs: 1/2 workers`.

use std::collections::HashMap;
use std::time::Instant;

use super::{Machine, Phase};
use crate::{ServiceId, WorkerId};

impl Machine {
    /// The status line for `now`.
    pub(crate) fn status_text(&self, now: Instant) -> String {
        match self.phase {
            Phase::Ready { .. } | Phase::Done => "starting".to_string(),
            Phase::Stopping {
                draining: Some(_), ..
            } => "stopping: waiting for the processes the workers started".to_string(),
            Phase::Stopping { .. } => match &self.policy_stop {
                // A restart policy began the stop: say why.
                Some((status, reason)) => format!(
                    "stopping: {reason} (exit status {status}): {}",
                    workers_left(self.workers.len())
                ),
                None => format!("stopping: {}", workers_left(self.workers.len())),
            },
            Phase::FastExit { killed: true, .. } => {
                format!("exiting: {}, killed", workers_left(self.workers.len()))
            }
            Phase::FastExit { .. } => format!("exiting: {}", workers_left(self.workers.len())),
            Phase::Supervising { reloading, .. } => {
                let mut running: HashMap<ServiceId, usize> = HashMap::new();
                for w in self.workers.values().filter(|w| !w.stopping) {
                    *running.entry(w.service).or_default() += 1;
                }
                let services: Vec<String> = self
                    .services
                    .iter()
                    .map(|s| {
                        let n = running.get(&s.id).copied().unwrap_or(0);
                        let mut text = format!("{}: {}/{} workers", s.name, n, s.count());
                        self.policy_notes(s.id, s.count(), now, &mut text);
                        text
                    })
                    .collect();
                let mut text = services.join("; ");
                if reloading {
                    text = format!("reloading; {text}");
                }
                if let Some(until) = self.limiter_until(now) {
                    let secs = until.saturating_duration_since(now).as_secs_f64().ceil();
                    text.push_str(&format!(" (forking too fast, next start in {secs}s)"));
                }
                text
            }
        }
    }
}

impl Machine {
    /// What the restart policy of `service` holds back: `, 1 finished,
    /// worker 2 restarting in 4s` (nothing for the contract's policy).
    fn policy_notes(&self, service: ServiceId, count: usize, now: Instant, text: &mut String) {
        let finished = (0..count)
            .filter(|w| self.id_record(service, *w).is_some_and(|r| r.finished))
            .count();
        if finished > 0 {
            text.push_str(&format!(", {finished} finished"));
        }
        let waiting: Vec<(WorkerId, Instant)> = (0..count)
            .filter_map(|w| Some((w, self.restart_due(service, w)?)))
            .collect();
        // A few by name; the line stays short with thousands.
        for (w, due) in waiting.iter().take(3) {
            let secs = due.saturating_duration_since(now).as_secs_f64().ceil();
            text.push_str(&format!(", worker {w} restarting in {secs}s"));
        }
        if waiting.len() > 3 {
            text.push_str(&format!(", {} more restarting", waiting.len() - 3));
        }
    }
}

fn workers_left(n: usize) -> String {
    match n {
        1 => "1 worker left".to_string(),
        n => format!("{n} workers left"),
    }
}
