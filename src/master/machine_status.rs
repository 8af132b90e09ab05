//! The one line systemd shows for the master (`STATUS=`, in `systemctl
//! status`), in words an operator reads: for example
//! `api: 4/4 workers; jobs: 1/2 workers`.

use std::collections::HashMap;
use std::time::Instant;

use super::{Machine, Phase};
use crate::ServiceId;

impl Machine {
    /// The status line for `now`.
    pub(crate) fn status_text(&self, now: Instant) -> String {
        match self.phase {
            Phase::Ready { .. } | Phase::Done => "starting".to_string(),
            Phase::Stopping {
                draining: Some(_), ..
            } => "stopping: waiting for the processes the workers started".to_string(),
            Phase::Stopping { .. } => format!("stopping: {}", workers_left(self.workers.len())),
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
                        format!("{}: {}/{} workers", s.name, n, s.count())
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

fn workers_left(n: usize) -> String {
    match n {
        1 => "1 worker left".to_string(),
        n => format!("{n} workers left"),
    }
}
