//! The API's errors and their messages, in process (no fork).

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{Error, Service, ServiceManager, Settings, TitleMode};

/// The tests that take the process-wide single-instance seatbelt, or look
/// at which fds are open, must not overlap with each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `fd` is an open fd of this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the fd table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

struct Idle;
impl Service for Idle {}

fn quiet() -> Settings {
    let mut s = Settings::default();
    s.session_leader = false;
    s.titles = TitleMode::Off;
    s.notify_systemd = false;
    s
}

#[test]
fn only_one_manager_at_a_time() {
    let _serial = serial();
    let first = ServiceManager::with_settings(quiet()).unwrap();
    let err = ServiceManager::with_settings(quiet())
        .err()
        .expect("second manager refused");
    assert!(matches!(err, Error::AlreadyCreated));
    assert_eq!(
        err.to_string(),
        "Only one instance of ServiceManager per application is allowed"
    );
    drop(first);
    // Released with the first one.
    let again = ServiceManager::with_settings(quiet()).unwrap();
    // single_instance off: allowed alongside.
    let mut loose = quiet();
    loose.single_instance = false;
    ServiceManager::with_settings(loose).unwrap();
    drop(again);
}

#[test]
fn worker_counts_are_checked_with_the_contracts_messages() {
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut m = ServiceManager::with_settings(s).unwrap();
    let err = m.add("a", 0, |_| Ok(Idle)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "'workers' must be an int >= 1, not: 0 (int)"
    );
    let id = m.add("a", 3, |_| Ok(Idle)).unwrap();
    // Down to 1 - 3 = -2 is allowed (0 and below stop every worker).
    let err = m.reconfigure(id, -3).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidWorkers {
            minimum: -2,
            given: -3
        }
    ));
    assert_eq!(
        err.to_string(),
        "'workers' must be an int >= -2, not: -3 (int)"
    );
    m.reconfigure(id, 0).unwrap();
    assert_eq!(m.handle().workers(id), Some(0));
    // The minimum follows the current count.
    assert_eq!(
        m.reconfigure(id, 0).unwrap_err().to_string(),
        "'workers' must be an int >= 1, not: 0 (int)"
    );
    m.reconfigure(id, 5).unwrap();
    assert_eq!(m.handle().workers(id), Some(5));
}

#[test]
fn unknown_service_ids_are_refused() {
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut other = ServiceManager::with_settings(s.clone()).unwrap();
    let foreign = other.add("x", 1, |_| Ok(Idle)).unwrap();
    let mut m = ServiceManager::with_settings(s).unwrap();
    let err = m.reconfigure(foreign, 2).unwrap_err();
    assert!(matches!(err, Error::UnknownService(id) if id == foreign));
    assert_eq!(
        err.to_string(),
        format!("{foreign} service id doesn't exists")
    );
}

#[test]
fn handles_change_the_timeout_and_shutdown_is_harmless_before_run() {
    let _serial = serial();
    let mut s = quiet();
    s.graceful_shutdown_timeout = Duration::from_secs(3);
    let m = ServiceManager::with_settings(s).unwrap();
    let h = m.handle();
    assert_eq!(h.graceful_shutdown_timeout(), Duration::from_secs(3));
    h.set_graceful_shutdown_timeout(Duration::ZERO);
    assert_eq!(h.graceful_shutdown_timeout(), Duration::ZERO);
    let h2 = h.clone();
    std::thread::spawn(move || h2.shutdown()).join().unwrap();
    let wake = m.wakeup_fd();
    drop(m);
    // The handle keeps the self-pipe it shares with the dropped manager
    // open, so that a handle never writes into an fd number reused by
    // someone else (below, the next manager's pipe).
    assert!(is_open(wake), "the dropped manager's wakeup fd stays open");
    // Dropping the manager releases the single-instance seatbelt, even
    // though a handle to it lives on.
    let next = ServiceManager::with_settings(quiet())
        .expect("a new manager once the previous one is dropped");
    assert_ne!(next.wakeup_fd(), wake);
    // The manager is gone: the handle still answers, and shutdown is
    // harmless.
    h.shutdown();
    assert_eq!(h.graceful_shutdown_timeout(), Duration::ZERO);
    drop(next);
    // With its last handle, the dropped manager's pipe goes too.
    drop(h);
    assert!(
        !is_open(wake),
        "the wakeup fd is closed with the last handle"
    );
}

#[test]
fn run_happens_once() {
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut m = ServiceManager::with_settings(s).unwrap();
    // Nothing added and a shutdown already requested: run() returns at once.
    m.shutdown();
    m.run().unwrap();
    assert!(matches!(m.run(), Err(Error::AlreadyRunning)));
    assert!(matches!(
        m.add("late", 1, |_| Ok(Idle)),
        Err(Error::AlreadyRunning)
    ));
}
