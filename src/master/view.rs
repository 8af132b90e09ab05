//! The machine's state as a [`Status`]: a read-only view, in wall-clock
//! times.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::machine::Machine;
use crate::status::{
    BackoffStatus, GiveUpStatus, LimiterStatus, PolicyStatus, ServiceStatus, Status, StopStatus,
    WorkerStatus,
};
use crate::ServicePolicy;

/// Unix seconds of `at`, given that `anchor.0` was `anchor.1`.
fn wall(at: Instant, anchor: (Instant, SystemTime)) -> f64 {
    let t = if at >= anchor.0 {
        anchor.1 + (at - anchor.0)
    } else {
        anchor.1 - (anchor.0 - at)
    };
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) fn status(m: &Machine, anchor: (Instant, SystemTime), now: Instant) -> Status {
    let services = m
        .services_view()
        .map(|(id, name, key, workers, counters)| {
            let wanted = workers.max(0) as usize;
            let ids = (0..wanted).chain(m.extra_ids(id));
            let worker_list: Vec<WorkerStatus> = ids
                .map(|worker_id| {
                    let record = m.id_record(id, worker_id);
                    let pid = record.and_then(|r| r.running);
                    let running = pid.and_then(|p| m.worker(p));
                    WorkerStatus {
                        worker_id,
                        pid,
                        started_at: running.map(|w| wall(w.started, anchor)),
                        restarts: record.map_or(0, |r| r.forks.saturating_sub(1)),
                        last_exit: record.and_then(|r| r.last_exit.clone()),
                        stopping: running.is_some_and(|w| w.stopping),
                        finished: record.is_some_and(|r| r.finished),
                        restart_at: m.restart_due(id, worker_id).map(|t| wall(t, anchor)),
                        failures: record.map_or(0, |r| r.failures),
                        restarted: record.is_some_and(|r| r.restarted),
                    }
                })
                .collect();
            ServiceStatus {
                id: id.as_u64(),
                name: name.to_string(),
                key: key.map(str::to_string),
                workers,
                running: worker_list.iter().filter(|w| w.pid.is_some()).count(),
                worker_list,
                counters: counters.clone(),
                policy: m.policy_of(id).map(policy_status).unwrap_or_default(),
            }
        })
        .collect();
    let until = m.limiter_until(now);
    Status {
        pid: std::process::id() as i32,
        state: m.state(),
        started_at: m.started_at().map_or(0.0, |t| wall(t, anchor)),
        services,
        limiter: LimiterStatus {
            waiting: until.is_some(),
            until: until.map(|t| wall(t, anchor)),
        },
        init_pid: crate::init::init_pid(),
        stopped_by: m.stopped_by().map(|(status, reason)| StopStatus {
            status,
            reason: reason.to_string(),
        }),
    }
}

fn policy_status(p: &ServicePolicy) -> PolicyStatus {
    PolicyStatus {
        restart: p.restart.as_str().to_string(),
        stop_on_exit: p.stop_on_exit,
        backoff: p.backoff.map(|b| BackoffStatus {
            base: b.base.as_secs_f64(),
            max: b.max.as_secs_f64(),
            jitter: b.jitter,
            stable: b.stable.as_secs_f64(),
        }),
        give_up: p.give_up.map(|g| GiveUpStatus {
            failures: g.failures,
            window: g.window.as_secs_f64(),
        }),
    }
}
