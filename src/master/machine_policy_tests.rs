//! The restart policies in the machine, without processes: each rule as
//! a sequence of steps with its exact actions (the jitter is seeded, so
//! the waits replay).

use std::time::{Duration, Instant};

use super::super::{Action, Command, Ending, Event, Exit, HookKind, Level, Machine, Sig};
use crate::policy::{Backoff, GiveUp, Restart, ServicePolicy, GIVE_UP_STATUS};
use crate::status::ManagerState;
use crate::{ServiceId, WorkerId};

const A: ServiceId = ServiceId(0);
const B: ServiceId = ServiceId(1);
const POLICY_STOP_LOG: &str = "Restart policy stop, graceful exiting of master process";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn log(level: Level, text: &str) -> Action {
    Action::Log {
        level,
        text: text.to_string(),
    }
}

fn info(text: &str) -> Action {
    log(Level::Info, text)
}

fn fork(service: ServiceId, worker: WorkerId) -> Action {
    Action::Fork { service, worker }
}

fn dead(service: ServiceId, worker: WorkerId, code: i32) -> Action {
    Action::DeadWorkerHooks {
        service,
        worker,
        code,
    }
}

fn exited(pid: i32, code: i32) -> Event {
    Event::ChildExited {
        pid,
        exit: Exit::Code(code),
    }
}

/// A machine with services (`policy`, `count`), wait_interval 0, run and
/// every worker forked at t0: service k's worker w is pid 100 × (k+1) + w.
struct P {
    m: Machine,
    t0: Instant,
    now: Instant,
}

impl P {
    fn new(services: &[(ServicePolicy, i64)]) -> P {
        let t0 = Instant::now();
        let mut m = Machine::new(Duration::ZERO, Duration::from_secs(60));
        for (k, (policy, count)) in services.iter().enumerate() {
            let id = ServiceId(k as u64);
            m.add_service(id, format!("s{k}"), None, *count);
            m.set_policy(id, *policy);
        }
        let mut p = P { m, t0, now: t0 };
        let start = Event::Start {
            group_leader: false,
            notify: false,
            watchdog: None,
        };
        assert_eq!(p.step(start), vec![]);
        for (k, (_, count)) in services.iter().enumerate() {
            for w in 0..*count as usize {
                let id = ServiceId(k as u64);
                assert_eq!(p.step(Event::Timer), vec![fork(id, w)]);
                assert_eq!(p.step(Event::Forked { pid: p.pid(id, w) }), vec![]);
            }
        }
        assert_eq!(p.m.state(), ManagerState::Running);
        assert_eq!(p.m.deadline(), None, "nothing planned");
        p
    }

    fn pid(&self, service: ServiceId, worker: WorkerId) -> i32 {
        100 * (service.0 as i32 + 1) + worker as i32
    }

    fn at(&mut self, offset_ms: u64) -> &mut Self {
        self.now = self.t0 + ms(offset_ms);
        self
    }

    fn step(&mut self, e: Event) -> Vec<Action> {
        self.m.step(e, self.now)
    }

    fn deadline_ms(&self) -> Option<u128> {
        self.m.deadline().map(|d| (d - self.t0).as_millis())
    }

    /// Worker `w` of `service` exits with `code`; the actions after the
    /// dead-worker hooks and the `Child` line.
    fn dies(&mut self, service: ServiceId, w: WorkerId, pid: i32, code: i32) -> Vec<Action> {
        let mut got = self.step(exited(pid, code));
        assert_eq!(
            got.drain(..2).collect::<Vec<_>>(),
            vec![
                dead(service, w, code),
                info(&format!("Child {pid} exited with status {code}"))
            ]
        );
        got
    }

    fn finished(&self, service: ServiceId, w: WorkerId) -> bool {
        self.m.id_record(service, w).is_some_and(|r| r.finished)
    }
}

fn on_failure() -> ServicePolicy {
    ServicePolicy::default().restart(Restart::OnFailure)
}

fn never() -> ServicePolicy {
    ServicePolicy::default().restart(Restart::Never)
}

fn backoff(base_ms: u64, max_ms: u64) -> ServicePolicy {
    ServicePolicy::default().backoff(Backoff::new(ms(base_ms), ms(max_ms)).jitter(0.0))
}

#[test]
fn on_failure_leaves_a_clean_exit_finished_and_respawns_a_failure() {
    let mut p = P::new(&[(on_failure(), 2)]);
    assert_eq!(
        p.at(1000).dies(A, 0, 100, 0),
        vec![info(
            "Worker 0 of service s0 finished (restart policy on-failure)"
        )]
    );
    assert!(p.finished(A, 0));
    assert_eq!(p.m.deadline(), None, "no respawn planned");
    assert_eq!(p.step(Event::Timer), vec![]);
    assert_eq!(p.dies(A, 1, 101, 3), vec![], "a failure: respawned");
    assert_eq!(p.deadline_ms(), Some(1000));
    assert_eq!(p.step(Event::Timer), vec![fork(A, 1)]);
    assert_eq!(p.m.id_record(A, 1).map(|r| r.failures), Some(1));
    // A scale leaves the finished id finished.
    p.step(Event::Command(Command::Scale {
        service: A,
        workers: 3,
    }));
    p.step(Event::Forked { pid: 201 });
    assert_eq!(p.step(Event::Timer), vec![fork(A, 2)]);
    assert_eq!(p.step(Event::Forked { pid: 202 }), vec![]);
    assert_eq!(p.m.deadline(), None, "worker 0 stays finished");
    assert!(p.finished(A, 0));
}

#[test]
fn never_respawns_no_counted_exit() {
    let mut p = P::new(&[(never(), 2)]);
    assert_eq!(
        p.dies(A, 0, 100, 3),
        vec![info(
            "Worker 0 of service s0 finished (restart policy never)"
        )]
    );
    assert!(p.finished(A, 0));
    let killed = p.step(Event::ChildExited {
        pid: 101,
        exit: Exit::Signal(libc::SIGKILL),
    });
    assert_eq!(
        killed.last(),
        Some(&info(
            "Worker 1 of service s0 finished (restart policy never)"
        ))
    );
    assert_eq!(p.m.deadline(), None);
    assert_eq!(p.m.state(), ManagerState::Running, "the manager runs on");
    assert!(!p.m.stopping());
}

#[test]
fn restarts_the_engine_caused_or_the_worker_announced_do_not_count() {
    let mut p = P::new(&[(never(), 3)]);
    p.at(10_000);
    // Announced (the default reload()), then exit 0: respawned.
    assert_eq!(p.step(Event::RestartAnnounced { pid: 100 }), vec![]);
    assert_eq!(p.dies(A, 0, 100, 0), vec![]);
    assert_eq!(p.step(Event::Timer), vec![fork(A, 0)]);
    p.step(Event::Forked { pid: 200 });
    // A control restart: SIGTERM from the master; even a nonzero exit.
    p.step(Event::Command(Command::Restart {
        service: A,
        worker: 1,
    }));
    assert_eq!(p.dies(A, 1, 101, 1), vec![]);
    assert_eq!(p.step(Event::Timer), vec![fork(A, 1)]);
    p.step(Event::Forked { pid: 201 });
    // A scale-down: stopped, not respawned, not finished.
    p.step(Event::Command(Command::Scale {
        service: A,
        workers: 2,
    }));
    assert_eq!(p.dies(A, 2, 102, 0), vec![]);
    assert_eq!(p.m.deadline(), None);
    for w in 0..3 {
        assert!(!p.finished(A, w), "worker {w}");
        assert_eq!(p.m.id_record(A, w).map(|r| r.failures), Some(0));
    }
    // An announcement from a pid that is no worker changes nothing.
    assert_eq!(p.step(Event::RestartAnnounced { pid: 999 }), vec![]);
}

/// Stops in the contract's order; returns the final actions.
fn finish_stop(p: &mut P, pids: &[i32]) -> Vec<Action> {
    let mut got = p.step(Event::HooksDone(HookKind::Terminate));
    for pid in pids {
        got = p.step(exited(*pid, 0));
    }
    got
}

#[test]
fn stop_on_exit_stops_with_the_last_final_failure() {
    let policy = never().stop_on_exit(true);
    let mut p = P::new(&[(policy, 2), (ServicePolicy::default(), 1)]);
    p.dies(A, 0, 100, 3);
    assert!(!p.m.stopping(), "worker 1 still runs");
    assert_eq!(
        p.dies(A, 1, 101, 0),
        vec![
            info("Worker 1 of service s0 finished (restart policy never)"),
            log(
                Level::Error,
                "Service s0 has no worker left (stop on exit): stopping the manager with exit status 3"
            ),
            info(POLICY_STOP_LOG),
            Action::RunHooks(HookKind::Terminate),
        ]
    );
    assert_eq!(
        p.m.stopped_by(),
        Some((3, "Service s0 has no worker left (stop on exit)"))
    );
    let end = finish_stop(&mut p, &[200]);
    assert_eq!(
        end.last(),
        Some(&Action::Exit(Ending::Stopped { status: 3 }))
    );
}

#[test]
fn stop_on_exit_counts_a_scaled_down_last_worker_once_an_id_finished() {
    let mut p = P::new(&[(never().stop_on_exit(true), 2)]);
    p.step(Event::Command(Command::Scale {
        service: A,
        workers: 1,
    }));
    p.dies(A, 0, 100, 3);
    assert!(!p.m.stopping(), "worker 1 still stopping");
    let got = p.dies(A, 1, 101, 0);
    assert_eq!(
        got[0],
        log(
            Level::Error,
            "Service s0 has no worker left (stop on exit): stopping the manager with exit status 3"
        )
    );
    // Scaled to 0 with no id finished: the manager runs on.
    let mut q = P::new(&[(never().stop_on_exit(true), 1)]);
    q.step(Event::Command(Command::Scale {
        service: A,
        workers: 0,
    }));
    assert_eq!(q.dies(A, 0, 100, 0), vec![]);
    assert!(!q.m.stopping());
}

#[test]
fn stop_on_exit_after_clean_exits_gives_back_zero() {
    let mut p = P::new(&[(on_failure().stop_on_exit(true), 1)]);
    // A failure first: respawned, so not final.
    p.dies(A, 0, 100, 4);
    assert_eq!(p.step(Event::Timer), vec![fork(A, 0)]);
    p.step(Event::Forked { pid: 300 });
    let got = p.dies(A, 0, 300, 0);
    assert_eq!(
        got[1],
        info(
            "Service s0 has no worker left (stop on exit): stopping the manager with exit status 0"
        )
    );
    let end = finish_stop(&mut p, &[]);
    assert_eq!(
        end.last(),
        Some(&Action::Exit(Ending::Stopped { status: 0 }))
    );
}

#[test]
fn stop_on_exit_reports_a_signal_as_128_plus_its_number() {
    let mut p = P::new(&[(never().stop_on_exit(true), 1)]);
    let got = p.step(Event::ChildExited {
        pid: 100,
        exit: Exit::Signal(libc::SIGKILL),
    });
    assert!(got.contains(&log(
        Level::Error,
        "Service s0 has no worker left (stop on exit): stopping the manager with exit status 137"
    )));
}

#[test]
fn backoff_doubles_per_id_and_never_holds_other_services() {
    let mut p = P::new(&[(backoff(100, 1000), 2), (ServicePolicy::default(), 1)]);
    // Worker 0 of A fails at 1000: due at 1100.
    assert_eq!(
        p.at(1000).dies(A, 0, 100, 1),
        vec![info(
            "Worker 0 of service s0 restarting in 0.100s (backoff)"
        )]
    );
    assert_eq!(p.deadline_ms(), Some(1100));
    assert_eq!(p.m.restart_due(A, 0), Some(p.t0 + ms(1100)));
    // Meanwhile B's worker dies: respawned at once, by the limiter.
    assert_eq!(p.at(1010).dies(B, 0, 200, 1), vec![]);
    assert_eq!(p.deadline_ms(), Some(1010));
    assert_eq!(p.step(Event::Timer), vec![fork(B, 0)]);
    p.step(Event::Forked { pid: 400 });
    assert_eq!(p.deadline_ms(), Some(1100), "A's wait still armed");
    assert_eq!(p.at(1099).step(Event::Timer), vec![]);
    // Signals are handled during the wait.
    assert_eq!(p.step(Event::Signal(Sig::Chld)), vec![Action::Reap]);
    assert_eq!(p.at(1100).step(Event::Timer), vec![fork(A, 0)]);
    p.step(Event::Forked { pid: 500 });
    assert_eq!(p.m.restart_due(A, 0), None);
    // Its next failures, each soon after: 200, 400, ... up to 1000 ms.
    let mut pid = 500;
    let mut t = 1200;
    for wait in [200, 400, 800, 1000, 1000] {
        let got = p.at(t).dies(A, 0, pid, 1);
        assert_eq!(
            got,
            vec![info(&format!(
                "Worker 0 of service s0 restarting in {:.3}s (backoff)",
                wait as f64 / 1000.0
            ))]
        );
        assert_eq!(p.deadline_ms(), Some((t + wait) as u128));
        t += wait;
        assert_eq!(p.at(t).step(Event::Timer), vec![fork(A, 0)]);
        pid += 1;
        p.step(Event::Forked { pid });
    }
    // Worker 1 has its own count: its first failure waits the base.
    assert_eq!(
        p.at(t).dies(A, 1, 101, 1),
        vec![info(
            "Worker 1 of service s0 restarting in 0.100s (backoff)"
        )]
    );
    // A process that ran `stable` (10 s) resets its id's count.
    p.at(t + 100).step(Event::Timer);
    p.step(Event::Forked { pid: 900 });
    let later = t + 100 + 10_000;
    assert_eq!(
        p.at(later).dies(A, 0, pid, 1),
        vec![info(
            "Worker 0 of service s0 restarting in 0.100s (backoff)"
        )]
    );
    assert_eq!(p.m.id_record(A, 0).map(|r| r.failures), Some(7));
}

#[test]
fn a_service_with_a_backoff_is_outside_the_limiter() {
    // A crash loop of A's single worker: with the contract's limiter the
    // 3rd fork within 1 s would wait 5 s ("Forking too fast").
    let mut p = P::new(&[(backoff(10, 10), 1), (ServicePolicy::default(), 1)]);
    let mut pid = 100;
    for i in 0..20u64 {
        let t = 1000 + i * 20;
        let got = p.at(t).dies(A, 0, pid, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(p.at(t + 10).step(Event::Timer), vec![fork(A, 0)]);
        pid = 1000 + i as i32;
        p.step(Event::Forked { pid });
    }
    assert_eq!(p.m.limiter_until(p.now), None);
    // B's respawn goes at once: A's forks are not in its history.
    p.at(1500).dies(B, 0, 200, 1);
    assert_eq!(p.step(Event::Timer), vec![fork(B, 0)]);
}

#[test]
fn the_jitter_is_drawn_from_the_seeded_generator() {
    let policy = ServicePolicy::default().backoff(Backoff::new(ms(1000), ms(1000)).jitter(0.5));
    let waits = |seed: u64| {
        let mut p = P::new(&[(policy, 1)]);
        p.m.seed_jitter(seed);
        let mut pid = 100;
        (0..5)
            .map(|i| {
                p.at(i * 2000).step(exited(pid, 1));
                let due = p.m.restart_due(A, 0).unwrap() - p.now;
                p.step(Event::Timer);
                p.at(i * 2000 + 1000).step(Event::Timer);
                pid += 1;
                p.step(Event::Forked { pid });
                due
            })
            .collect::<Vec<_>>()
    };
    let a = waits(1);
    assert_eq!(a, waits(1), "same seed, same waits");
    assert_ne!(a, waits(2));
    assert!(a.iter().all(|d| *d > ms(500) && *d <= ms(1000)), "{a:?}");
    assert!(a.windows(2).any(|w| w[0] != w[1]), "{a:?}");
}

#[test]
fn give_up_stops_the_manager_with_its_status() {
    let policy = ServicePolicy::default().give_up(GiveUp::new(3, Duration::from_secs(10)));
    let mut p = P::new(&[(policy, 2)]);
    // Clean exits are no failures; failures 11 s apart leave the window.
    p.at(10_000).dies(A, 0, 100, 0);
    p.step(Event::Timer);
    p.step(Event::Forked { pid: 300 });
    p.at(11_000).dies(A, 0, 300, 1);
    p.step(Event::Timer);
    p.step(Event::Forked { pid: 301 });
    p.at(22_000).dies(A, 1, 101, 1);
    p.step(Event::Timer);
    p.step(Event::Forked { pid: 302 });
    assert!(!p.m.stopping());
    assert_eq!(p.at(23_000).dies(A, 0, 301, 2), vec![], "2 in the window");
    p.step(Event::Timer);
    p.step(Event::Forked { pid: 303 });
    assert_eq!(
        p.at(24_000).dies(A, 1, 302, 2),
        vec![
            log(
                Level::Error,
                "Service s0 gave up: 3 failures within 10s: stopping the manager with exit status 125"
            ),
            info(POLICY_STOP_LOG),
            Action::RunHooks(HookKind::Terminate),
        ]
    );
    assert_eq!(
        p.m.stopped_by(),
        Some((GIVE_UP_STATUS, "Service s0 gave up: 3 failures within 10s"))
    );
    let end = finish_stop(&mut p, &[303]);
    assert_eq!(
        end.last(),
        Some(&Action::Exit(Ending::Stopped {
            status: GIVE_UP_STATUS
        }))
    );
}

#[test]
fn a_default_policy_changes_nothing() {
    let mut p = P::new(&[(ServicePolicy::default(), 1)]);
    assert_eq!(p.dies(A, 0, 100, 0), vec![]);
    assert_eq!(p.step(Event::Timer), vec![fork(A, 0)]);
    assert_eq!(p.m.stopped_by(), None);
}

#[test]
fn systemd_hears_pending_restarts_finished_ids_and_why_a_policy_stops() {
    use crate::notify::Notice;
    let t0 = Instant::now();
    let mut m = Machine::new(Duration::ZERO, Duration::from_secs(60));
    m.add_service(A, "api".into(), None, 2);
    m.set_policy(
        A,
        never()
            .stop_on_exit(true)
            .backoff(Backoff::new(ms(1500), ms(1500))),
    );
    let start = Event::Start {
        group_leader: false,
        notify: true,
        watchdog: None,
    };
    m.step(start, t0);
    for (w, pid) in [(0, 100), (1, 101)] {
        assert_eq!(m.step(Event::Timer, t0), vec![fork(A, w)]);
        m.step(Event::Forked { pid }, t0);
    }
    let status = |actions: Vec<Action>| -> Vec<String> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some(n),
                _ => None,
            })
            .flatten()
            .filter_map(|n| match n {
                Notice::Status(s) => Some(s),
                _ => None,
            })
            .collect()
    };
    let t = t0 + Duration::from_secs(1);
    assert_eq!(
        status(m.step(exited(100, 3), t)),
        ["api: 1/2 workers, 1 finished"]
    );
    m.set_policy(
        A,
        ServicePolicy::default().backoff(Backoff::new(ms(1500), ms(1500)).jitter(0.0)),
    );
    let t = t0 + Duration::from_secs(2);
    assert_eq!(
        status(m.step(exited(101, 3), t)),
        ["api: 0/2 workers, 1 finished, worker 1 restarting in 2s"]
    );
    assert_eq!(
        m.status_text(t + ms(1000)),
        "api: 0/2 workers, 1 finished, worker 1 restarting in 1s"
    );
    m.policy_stop = Some((125, "Service api gave up: 3 failures within 60s".into()));
    m.step(Event::Signal(Sig::Term), t);
    assert_eq!(
        m.status_text(t),
        "stopping: Service api gave up: 3 failures within 60s (exit status 125): 0 workers left"
    );
}
