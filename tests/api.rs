//! The API's errors and their messages, in process (no fork).

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{
    AppError, Error, HookResult, Service, ServiceExit, ServiceManager, ServiceResult, Settings,
    TitleMode,
};

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
        "a service manager already exists in this process (one at a time, unless single_instance is off)"
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
fn worker_counts_are_checked_with_rust_messages() {
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut m = ServiceManager::with_settings(s).unwrap();
    let err = m.add("a", 0, |_| Ok(Idle)).unwrap_err();
    assert_eq!(err.to_string(), "invalid worker count 0: the minimum is 1");
    let id = m.add("a", 3, |_| Ok(Idle)).unwrap();
    // Down to 1 - 3 = -2 is allowed (0 and below stop every worker).
    let err = m.reconfigure(id, -3).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidWorkers {
            minimum: -2,
            given: -3,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "invalid worker count -3: the minimum is -2"
    );
    m.reconfigure(id, 0).unwrap();
    assert_eq!(m.handle().workers(id), Some(0));
    // The minimum follows the current count.
    assert_eq!(
        m.reconfigure(id, 0).unwrap_err().to_string(),
        "invalid worker count 0: the minimum is 1"
    );
    m.reconfigure(id, 5).unwrap();
    assert_eq!(m.handle().workers(id), Some(5));
}

/// Every count the engine cannot run is an error, at both ends, in `add`,
/// `reconfigure` and `scale`; `workers()` then still says the last count
/// taken (nothing wrapped).
#[test]
fn worker_counts_at_the_edges_are_errors() {
    use cotyledon::MAX_WORKERS;
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut m = ServiceManager::with_settings(s).unwrap();
    let too_many =
        |given: i64| format!("invalid worker count {given}: the maximum is {MAX_WORKERS}");
    let too_few = |minimum: i64, given: i64| {
        format!("invalid worker count {given}: the minimum is {minimum}")
    };
    for (given, text) in [
        (i64::MAX, too_many(i64::MAX)),
        (MAX_WORKERS + 1, too_many(MAX_WORKERS + 1)),
        // What a -1 cast to an unsigned 64-bit count and back becomes.
        (u64::MAX as i64, too_few(1, -1)),
        (-1, too_few(1, -1)),
        (0, too_few(1, 0)),
        (i64::MIN, too_few(1, i64::MIN)),
    ] {
        let err = m.add("x", given, |_| Ok(Idle)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidWorkers { .. }),
            "{given}: {err:?}"
        );
        assert_eq!(err.to_string(), text, "add({given})");
    }
    let id = m.add("x", MAX_WORKERS, |_| Ok(Idle)).unwrap();
    assert_eq!(m.handle().workers(id), Some(MAX_WORKERS));
    let h = m.handle();
    for (given, text) in [
        (i64::MAX, too_many(i64::MAX)),
        (MAX_WORKERS + 1, too_many(MAX_WORKERS + 1)),
        (i64::MIN, too_few(1 - MAX_WORKERS, i64::MIN)),
    ] {
        assert_eq!(h.reconfigure(id, given).unwrap_err().to_string(), text);
        assert_eq!(h.workers(id), Some(MAX_WORKERS), "unchanged by {given}");
    }
    // scale: 0 to MAX_WORKERS, no contract floor.
    for (given, text) in [
        (-1, too_few(0, -1)),
        (i64::MIN, too_few(0, i64::MIN)),
        (i64::MAX, too_many(i64::MAX)),
    ] {
        assert_eq!(h.scale(id, given).unwrap_err().to_string(), text);
    }
    h.scale(id, 0).unwrap();
    assert_eq!(h.workers(id), Some(0));
    h.reconfigure(id, 1).unwrap();
    assert_eq!(h.workers(id), Some(1));
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
    assert_eq!(err.to_string(), format!("unknown service id {foreign}"));
}

#[test]
fn handles_change_the_timeout_and_shutdown_is_harmless_before_run() {
    let _serial = serial();
    let mut s = quiet();
    s.graceful_shutdown_timeout = Duration::from_secs(3);
    let m = ServiceManager::with_settings(s).unwrap();
    let h = m.handle();
    assert_eq!(h.graceful_shutdown_timeout(), Duration::from_secs(3));
    h.set_graceful_shutdown_timeout(Duration::ZERO).unwrap();
    assert_eq!(h.graceful_shutdown_timeout(), Duration::ZERO);
    let h2 = h.clone();
    std::thread::spawn(move || h2.shutdown())
        .join()
        .unwrap()
        .unwrap();
    let wake = cotyledon::bindings::wakeup_fd(&m);
    drop(m);
    // The handle keeps the self-pipe it shares with the dropped manager
    // open, so that a handle never writes into an fd number reused by
    // someone else (below, the next manager's pipe).
    assert!(is_open(wake), "the dropped manager's wakeup fd stays open");
    // Dropping the manager releases the single-instance seatbelt, even
    // though a handle to it lives on.
    let next = ServiceManager::with_settings(quiet())
        .expect("a new manager once the previous one is dropped");
    assert_ne!(cotyledon::bindings::wakeup_fd(&next), wake);
    // The manager is gone: the handle still answers, and shutdown is
    // harmless.
    h.shutdown().unwrap();
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
    m.shutdown().unwrap();
    m.run().unwrap();
    assert!(matches!(m.run(), Err(Error::AlreadyRunning)));
    assert!(matches!(
        m.add("late", 1, |_| Ok(Idle)),
        Err(Error::AlreadyRunning)
    ));
}

#[test]
fn service_names_must_be_unique_and_not_empty_except_through_add_with_key() {
    let _serial = serial();
    let mut s = quiet();
    s.single_instance = false;
    let mut m = ServiceManager::with_settings(s).unwrap();
    let web = m.add("web", 1, |_| Ok(Idle)).unwrap();
    let err = m.add("web", 2, |_| Ok(Idle)).unwrap_err();
    assert!(matches!(err, Error::DuplicateServiceName(ref n) if n == "web"));
    assert_eq!(err.to_string(), "a service named \"web\" was already added");
    let err = m
        .add_with_policy("web", 1, Default::default(), |_| Ok(Idle))
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateServiceName(_)));
    let err = m.add("", 1, |_| Ok(Idle)).unwrap_err();
    assert!(matches!(err, Error::EmptyServiceName));
    assert_eq!(err.to_string(), "a service name must not be empty");
    // Nothing was added by the refused calls.
    assert_eq!(m.handle().status().services.len(), 1);
    // The bindings' path keeps Cotyledon's leniency (Python allows both).
    let twin = cotyledon::bindings::add_with_key(&mut m, "web", 1, "k1", |_| Ok(Idle)).unwrap();
    let empty = cotyledon::bindings::add_with_key(&mut m, "", 1, "k2", |_| Ok(Idle)).unwrap();
    let h = m.handle();
    assert_eq!(h.service_name(web).as_deref(), Some("web"));
    assert_eq!(h.service_name(twin).as_deref(), Some("web"));
    assert_eq!(h.service_name(empty).as_deref(), Some(""));
    assert_eq!(h.service_name(cotyledon::ServiceId::from(u64::MAX)), None);
    // The master is no worker.
    assert!(cotyledon::current_worker().is_none());
}

#[derive(Debug)]
struct Mine;
impl std::fmt::Display for Mine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}
impl std::error::Error for Mine {}

/// One body for a service method and a hook: `?` on each kind of error.
fn fails_with(kind: u8) -> Result<(), AppError> {
    match kind {
        0 => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no file"))?,
        1 => Err(Box::<dyn std::error::Error + Send + Sync>::from("boxed"))?,
        2 => Err(String::from("a string"))?,
        3 => Err("a str")?,
        4 => Err(Mine)?,
        5 => Err(ServiceExit::Code(7))?,
        6 => Err(Error::UnknownService(cotyledon::ServiceId::from(9)))?,
        _ => Ok(()),
    }
}

#[test]
fn service_methods_and_hooks_share_one_error_type_that_takes_any_error() {
    let service: fn(u8) -> ServiceResult = fails_with;
    let hook: fn(u8) -> HookResult = fails_with;
    let texts = [
        "no file",
        "boxed",
        "a string",
        "a str",
        "my error",
        "exit with status 7",
        "unknown service id 9",
    ];
    for (kind, text) in texts.iter().enumerate() {
        let e = service(kind as u8).unwrap_err();
        assert_eq!(e.to_string(), *text);
        assert_eq!(hook(kind as u8).unwrap_err().to_string(), *text);
        // Only a ServiceExit chooses the worker's status; the rest fail.
        assert_eq!(e.exit_code(), if kind == 5 { 7 } else { 2 }, "{text}");
    }
    let e = fails_with(4).unwrap_err();
    assert!(e.is::<Mine>());
    assert!(e.downcast_ref::<Mine>().is_some());
    let e = fails_with(0).unwrap_err();
    let io = e.downcast::<std::io::Error>().expect("the io::Error back");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        fails_with(5)
            .unwrap_err()
            .downcast::<ServiceExit>()
            .unwrap(),
        ServiceExit::Code(7)
    );
    // ServiceExit is an Error of its own, with a Display.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(ServiceExit::Failed("x".into()));
    assert_eq!(boxed.to_string(), "x");
    assert_eq!(AppError::exit(3).exit_code(), 3);
}
