//! The machine's state as a [`Status`]: a read-only view, in wall-clock
//! times.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::machine::Machine;
use crate::status::{LimiterStatus, ServiceStatus, Status, WorkerStatus};

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
    }
}
