//! Who a worker is (the factory's identity, `current_worker()`, the
//! master's `service_name`) and reload checks that refuse a reload, on
//! real processes.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn factories_and_workers_know_their_identity_and_hooks_map_ids_to_names() {
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_IDENTITY", "1"),
        ("APP_OTHER", "1"),
    ]);
    let mut lines = app.expect_n("event identity ", 2);
    lines.sort();
    for (wid, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!(
                "event identity wid={wid} service=svc sid={} current=svc({wid}) same=true",
                field(line, "sid")
            )),
            "{line}"
        );
    }
    let sid = field(&lines[0], "sid");
    assert_eq!(field(&lines[1], "sid"), sid, "one service id");
    let pids = running_workers(&mut app, 2);
    app.expect("event other-init");
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
    // The master's hook names the service from its id, and is no worker.
    app.expect("event dead name=svc wid=1 code=-9 master_is_worker=false");
    // The respawn keeps the worker id and its identity.
    let again = app.expect("event identity wid=1 ");
    assert!(
        again.contains("service=svc") && again.contains("current=svc(1) same=true"),
        "{again}"
    );
    assert_eq!(field(&again, "sid"), sid);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
}

#[test]
fn a_reload_check_that_refuses_stops_the_reload_before_any_worker_hears_it() {
    let dir = std::env::temp_dir().join(format!("cotyledon-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    let marker = dir.join("generation");
    std::fs::write(&config, "bad\n").unwrap();
    std::fs::write(&marker, "1\n").unwrap();
    let mut app = App::start(&[
        ("APP_WORKERS", "2"),
        ("APP_RELOAD", "1"),
        ("APP_RELOAD_CHECK", config.to_str().unwrap()),
        ("APP_MARKER", marker.to_str().unwrap()),
    ]);
    let pids = running_workers(&mut app, 2);

    // Refused: logged at ERROR with the check's reason, on one line.
    app.signal(Signal::SIGHUP);
    app.expect("event check bad");
    let refused = app.expect("Reload refused by a reload check:");
    assert!(
        refused.ends_with(&format!(
            "] ERROR:cotyledon._service_manager:Reload refused by a reload check: {} says bad",
            config.display()
        )),
        "{refused}"
    );

    // Accepted: the reload hooks run and every worker reloads, once.
    std::fs::write(&marker, "2\n").unwrap();
    std::fs::write(&config, "good\n").unwrap();
    app.signal(Signal::SIGHUP);
    app.expect("event check good");
    app.expect("event hook reload after check");
    expect_reloaded_in_place(&mut app, &pids);

    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait(), 0);
    let _ = app.drain();
    let reloads: Vec<&String> = app
        .seen
        .iter()
        .filter(|l| l.contains("event reload "))
        .collect();
    // The refused SIGHUP reached no worker, and its reload hook never ran.
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert!(reloads.iter().all(|l| l.contains("gen=2")), "{reloads:?}");
    let hooks = app
        .seen
        .iter()
        .filter(|l| l.contains("event hook reload after check"))
        .count();
    assert_eq!(hooks, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
