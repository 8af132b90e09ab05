//! The application the integration tests (tests/*.rs) drive as a real
//! master process. Its behaviour is chosen by environment variables; it
//! reports what happens as `INFO:app:event ...` lines on stderr.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cotyledon::{AppError, ServiceManager, ServiceResult, Settings, WorkerId, WorkerIdentity};
use log::info;

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

/// What every variant of the service does.
struct Core {
    id: WorkerId,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Core {
    fn new(me: &WorkerIdentity) -> Self {
        let id = me.worker_id;
        if flag("APP_IDENTITY") {
            // What the factory got, and what the worker can ask later.
            let now = cotyledon::current_worker().expect("in a worker");
            info!(target: "app", "event identity wid={id} service={} sid={} current={}({}) same={}", me.service_name, me.service_id, now.service_name, now.worker_id, now == me);
        }
        let notify = std::env::var("NOTIFY_SOCKET").unwrap_or_else(|_| "-".into());
        // systemd's variables this worker inherited (none should be).
        let sysvars: Vec<&str> = cotyledon::SYSTEMD_VARS
            .iter()
            .copied()
            .filter(|v| std::env::var_os(v).is_some())
            .collect();
        info!(target: "app", "event init wid={id} pid={} notify={notify} sysvars=[{}] gen={}", std::process::id(), sysvars.join(","), generation());
        if flag("APP_IGNORE_TERM") {
            // A service that shields itself from SIGTERM.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        if flag("APP_IGNORE_INT") {
            // ... and from SIGINT.
            unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        }
        if flag("APP_REPORT_FDS") {
            info!(target: "app", "event fds wid={id} {}", open_fds());
        }
        Core {
            id,
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn run(&self) -> ServiceResult {
        info!(target: "app", "event run wid={} pid={}", self.id, std::process::id());
        if let Some(code) = env_num("APP_RUN_EXIT") {
            return Err(AppError::exit(code as i32));
        }
        if let Some(code) = exit_code_of(self.id) {
            // APP_EXIT_CODES: worker `wid` exits with the wid-th code.
            return Err(AppError::exit(code));
        }
        if flag("APP_RUN_PANIC") {
            panic!("run failed on purpose");
        }
        if flag("APP_ORPHAN") {
            // A child that leaves a grandchild behind and exits: the
            // grandchild, dead at once, is an orphan only an init reaps.
            let out = std::process::Command::new("sh")
                .args(["-c", "sh -c 'exit 0' & echo $!"])
                .output()
                .expect("sh");
            let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            info!(target: "app", "event orphan wid={} pid={pid}", self.id);
        }
        if flag("APP_GRANDCHILD") {
            // Left running on purpose: the shutdown must clear it away.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("sleep");
            info!(target: "app", "event grandchild wid={} pid={}", self.id, child.id());
        }
        if flag("APP_STUBBORN_GRANDCHILD") {
            // A process of its own that ignores SIGTERM and SIGINT: only
            // SIGKILL ends it.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new("sh")
                .args(["-c", "trap '' TERM INT; exec sleep 1000"])
                .spawn()
                .expect("sh");
            info!(target: "app", "event stubborn wid={} pid={}", self.id, child.id());
        }
        let mut stop = self.stop.lock().unwrap();
        while !*stop {
            stop = self.wake.wait(stop).unwrap();
        }
        Ok(())
    }

    fn terminate(&self) -> ServiceResult {
        info!(target: "app", "event terminate wid={} pid={}", self.id, std::process::id());
        if flag("APP_TERM_HANG") {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        *self.stop.lock().unwrap() = true;
        self.wake.notify_all();
        match env_num("APP_TERM_CODE") {
            Some(c) => Err(AppError::exit(c as i32)),
            None => Ok(()),
        }
    }

    fn timeout(&self) -> Option<Duration> {
        env_num("APP_SERVICE_TIMEOUT").map(Duration::from_secs)
    }
}

/// With a reload() of its own.
struct Reloading(Core);

impl cotyledon::Service for Reloading {
    fn run(&self) -> ServiceResult {
        self.0.run()
    }
    fn terminate(&self) -> ServiceResult {
        self.0.terminate()
    }
    fn reload(&self) -> ServiceResult {
        info!(target: "app", "event reload wid={} pid={} gen={}", self.0.id, std::process::id(), generation());
        if flag("APP_RELOAD_HANG") {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if let Some(gate) = std::env::var_os("APP_RELOAD_GATE") {
            // Holds reload() until the test creates the file (10 s at most).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            info!(target: "app", "event reload-done wid={} pid={}", self.0.id, std::process::id());
        }
        Ok(())
    }
    fn graceful_shutdown_timeout(&self) -> Option<Duration> {
        self.0.timeout()
    }
}

/// With the default reload() (restart the worker).
struct Restarting(Core);

impl cotyledon::Service for Restarting {
    fn run(&self) -> ServiceResult {
        self.0.run()
    }
    fn terminate(&self) -> ServiceResult {
        self.0.terminate()
    }
    fn graceful_shutdown_timeout(&self) -> Option<Duration> {
        self.0.timeout()
    }
}

/// `APP_EXIT_CODES=0,3,-`: the code worker `wid` exits with at once
/// (`-`: it runs).
fn exit_code_of(wid: WorkerId) -> Option<i32> {
    let codes = std::env::var("APP_EXIT_CODES").ok()?;
    codes.split(',').nth(wid)?.parse().ok()
}

/// The restart policy the `APP_RESTART`, `APP_STOP_ON_EXIT`,
/// `APP_BACKOFF_MS=base,max` and `APP_GIVE_UP=failures,window_ms`
/// variables describe.
fn policy_from_env() -> cotyledon::ServicePolicy {
    let mut policy = cotyledon::ServicePolicy::default();
    if let Ok(r) = std::env::var("APP_RESTART") {
        policy = policy.restart(r.parse().expect("APP_RESTART"));
    }
    policy = policy.stop_on_exit(flag("APP_STOP_ON_EXIT"));
    let pair = |name: &str| -> Option<(u64, u64)> {
        let v = std::env::var(name).ok()?;
        let (a, b) = v.split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    if let Some((base, max)) = pair("APP_BACKOFF_MS") {
        let ms = Duration::from_millis;
        policy = policy.backoff(
            cotyledon::Backoff::new(ms(base), ms(max))
                .jitter(0.0)
                .stable(Duration::from_secs(60)),
        );
    }
    if let Some((n, window)) = pair("APP_GIVE_UP") {
        policy = policy.give_up(cotyledon::GiveUp::new(
            n as u32,
            Duration::from_millis(window),
        ));
    }
    policy
}

/// The content of the file `APP_MARKER` names (a generation the test
/// bumps before its last SIGHUP), or `-`.
fn generation() -> String {
    std::env::var("APP_MARKER")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "-".into())
}

/// This process's open fds, each marked `c` when close-on-exec: `0 1 2 5c`.
fn open_fds() -> String {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds.iter()
        .filter_map(|fd| {
            // The directory listing itself is gone by now: skip closed fds.
            let flags = nix::fcntl::fcntl(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .ok()?;
            let cloexec = flags & libc::FD_CLOEXEC != 0;
            Some(format!("{fd}{}", if cloexec { "c" } else { "" }))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs `event <who> took pid=<pid> status=<status>` for a status the
/// application's own `waitpid(-1)` took from under the engine; nothing when
/// it took none (`StillAlive`).
fn report_theft(who: &str, status: nix::sys::wait::WaitStatus) {
    if let Some(pid) = status.pid() {
        info!(target: "app", "event {who} took pid={pid} status={status:?}");
    }
}

#[derive(Debug)]
struct Oops;
impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Two lines: the record must still be one.
        f.write_str("hook failed on purpose\nsecond line")
    }
}
impl std::error::Error for Oops {}

/// `APP_EXEC`: the workers of "svc" are started in a new program (this
/// one, again), which finds its identity in `APP_EXEC_WORKER` and runs the
/// worker with `ServiceManager::run_worker`.
fn exec_worker(identity: &str) -> ! {
    let identity: cotyledon::WorkerHandover = match identity.parse() {
        Ok(id) => id,
        Err(e) => {
            info!(target: "app", "event exec-error {e}");
            std::process::exit(3)
        }
    };
    info!(
        target: "app",
        "event exec-worker wid={} pid={} ppid={}",
        identity.worker,
        std::process::id(),
        std::os::unix::process::parent_id()
    );
    let mut settings = Settings::default();
    settings.session_leader = false;
    settings.init = cotyledon::InitMode::Never;
    let mut manager = ServiceManager::with_settings(settings).expect("manager");
    manager
        .add("svc", 1, |id| Ok(Restarting(Core::new(id))))
        .expect("add");
    manager.on_new_worker(|_, wid, _| {
        info!(target: "app", "event hook new_worker wid={wid} pid={}", std::process::id());
        Ok(())
    });
    let e = manager.run_worker(&identity).unwrap_err();
    info!(target: "app", "event exec-error {e}");
    std::process::exit(3)
}

fn main() {
    cotyledon::logging::init_stderr(log::LevelFilter::Debug);
    if let Ok(identity) = std::env::var("APP_EXEC_WORKER") {
        exec_worker(&identity);
    }
    let mut settings = Settings::default();
    if let Some(ms) = env_num("APP_WAIT_INTERVAL_MS") {
        settings.wait_interval = Duration::from_millis(ms);
    }
    if let Some(s) = env_num("APP_MASTER_TIMEOUT") {
        settings.graceful_shutdown_timeout = Duration::from_secs(s);
    }
    if flag("APP_TITLE_FULL") {
        settings.titles = cotyledon::TitleMode::Full;
    }
    if let Some(ms) = env_num("APP_METRICS_MS") {
        settings.metrics_interval = Duration::from_millis(ms);
    }
    if flag("APP_NO_SESSION") {
        // Stays in the caller's process group, which it does not lead.
        settings.session_leader = false;
    }
    if let Some(ms) = env_num("APP_KILL_GRACE_MS") {
        settings.kill_grace = Duration::from_millis(ms);
    }
    // A file the application opened before creating the manager (the init
    // split off at creation must not keep it).
    let _held = flag("APP_HOLD_FILE").then(|| std::fs::File::open("/dev/null").expect("open"));
    if let Ok(mode) = std::env::var("APP_INIT") {
        settings.init = mode.parse().expect("APP_INIT");
    }
    let mut manager = match ServiceManager::with_settings(settings) {
        Ok(m) => m,
        Err(e) => {
            info!(target: "app", "event error {e}");
            std::process::exit(3)
        }
    };
    let workers = env_num("APP_WORKERS").unwrap_or(3) as i64;
    if let Some(code) = env_num("APP_CTOR_EXIT") {
        manager
            .add("broken", 1, move |_| -> Result<Restarting, AppError> {
                info!(target: "app", "event ctor pid={}", std::process::id());
                Err(AppError::exit(code as i32))
            })
            .expect("add");
    }
    let policy = policy_from_env();
    let id = if flag("APP_RELOAD") {
        manager.add_with_policy("svc", workers, policy, |me| Ok(Reloading(Core::new(me))))
    } else {
        manager.add_with_policy("svc", workers, policy, |me| Ok(Restarting(Core::new(me))))
    }
    .expect("add");
    if flag("APP_EXEC") {
        manager
            .set_exec(id, |identity| {
                use std::os::unix::process::CommandExt;
                let program = std::env::var("APP_EXEC_PROGRAM")
                    .unwrap_or_else(|_| "/proc/self/exe".to_string());
                std::process::Command::new(program)
                    .env("APP_EXEC_WORKER", identity.to_string())
                    .exec()
            })
            .expect("set_exec");
    }
    if flag("APP_OTHER") {
        // A second service, with the contract's policy.
        manager
            .add("other", 1, |_| {
                info!(target: "app", "event other-init pid={}", std::process::id());
                // An id no APP_EXIT_CODES entry names: it runs.
                Ok(Reloading(Core {
                    id: usize::MAX,
                    stop: Mutex::new(false),
                    wake: Condvar::new(),
                }))
            })
            .expect("add other");
    }

    if flag("APP_HOOKS") {
        manager.on_terminate(|| {
            info!(target: "app", "event hook terminate 1");
            Ok(())
        });
        manager.on_terminate(|| -> cotyledon::HookResult { panic!("hook panicked on purpose") });
        manager.on_terminate(|| {
            info!(target: "app", "event hook terminate 3");
            Ok(())
        });
        manager.on_new_worker(|_, wid, _| {
            info!(target: "app", "event hook new_worker wid={wid} pid={}", std::process::id());
            Ok(())
        });
        manager.on_dead_worker(|_, wid, code| {
            info!(target: "app", "event hook dead_worker wid={wid} code={code}");
            Err(Oops)?
        });
        manager.on_reload(|| {
            info!(target: "app", "event hook reload");
            Ok(())
        });
    }
    if let Ok(seq) = std::env::var("APP_RECONFIGURE") {
        // Each SIGHUP moves to the next count of the list.
        let counts: Vec<i64> = seq.split(',').filter_map(|c| c.parse().ok()).collect();
        let step = AtomicUsize::new(0);
        let handle = manager.handle();
        manager.on_reload(move || {
            let i = step.fetch_add(1, Ordering::Relaxed);
            if let Some(&n) = counts.get(i) {
                handle.reconfigure(id, n)?;
                info!(target: "app", "event reconfigured {n}");
            }
            Ok(())
        });
    }
    if let Some(ms) = env_num("APP_RELOAD_HOOK_MS") {
        // A reload hook that tells systemd it runs, then holds the
        // master's loop for a while.
        manager.on_reload(move || {
            let told = cotyledon::sd_notify("STATUS=hook")?;
            info!(target: "app", "event hook reload told={told}");
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        });
    }
    if flag("APP_STATUS_ON_HUP") {
        // Each SIGHUP prints the master's status, read from a hook.
        let handle = manager.handle();
        manager.on_reload(move || {
            let json = serde_json::to_string(&handle.status())?;
            info!(target: "app", "event status {json}");
            Ok(())
        });
    }
    if flag("APP_LATE_HOOKS") {
        // The first SIGHUP's hook adds one hook of each kind while run()
        // runs, through a handle, then adds a worker.
        let handle = manager.handle();
        let added = AtomicBool::new(false);
        manager.on_reload(move || {
            if added.swap(true, Ordering::Relaxed) {
                return Ok(());
            }
            handle.on_reload(|| {
                info!(target: "app", "event late reload");
                Ok(())
            })?;
            handle.on_new_worker(|_, wid, _| {
                info!(target: "app", "event late new_worker wid={wid} pid={}", std::process::id());
                Ok(())
            })?;
            handle.on_dead_worker(|_, wid, code| {
                info!(target: "app", "event late dead_worker wid={wid} code={code}");
                Ok(())
            })?;
            handle.on_terminate(|| {
                info!(target: "app", "event late terminate");
                Ok(())
            })?;
            info!(target: "app", "event late hooks added");
            let n = handle.workers(id).unwrap_or(0);
            handle.reconfigure(id, n + 1)?;
            Ok(())
        });
    }
    if let Ok(path) = std::env::var("APP_RELOAD_CHECK") {
        // A reload check that refuses while the file says "bad", then a
        // plain reload hook that reports it ran.
        manager.on_reload_check(move || {
            let text = std::fs::read_to_string(&path)?;
            info!(target: "app", "event check {}", text.trim());
            if text.trim() == "bad" {
                return Err(format!("{path} says bad").into());
            }
            Ok(())
        });
        manager.on_reload(|| {
            info!(target: "app", "event hook reload after check");
            Ok(())
        });
    }
    if flag("APP_IDENTITY") {
        // The master maps the ids its hooks get to names; it is no worker.
        let handle = manager.handle();
        manager.on_dead_worker(move |sid, wid, code| {
            let name = handle.service_name(sid).unwrap_or_else(|| "?".into());
            let master_is_worker = cotyledon::current_worker().is_some();
            info!(target: "app", "event dead name={name} wid={wid} code={code} master_is_worker={master_is_worker}");
            Ok(())
        });
    }
    if flag("APP_SHUTDOWN_ON_DEAD") {
        let handle = manager.handle();
        manager.on_dead_worker(move |_, _, _| {
            handle.shutdown()?;
            Ok(())
        });
    }
    if flag("APP_DEAD_STATUS") {
        // What a dead-worker hook can tell of the death from the status.
        let handle = manager.handle();
        manager.on_dead_worker(move |service, wid, code| {
            let status = handle.status();
            let worker = status
                .services
                .iter()
                .find(|s| s.id == service.as_u64())
                .and_then(|s| s.worker_list.iter().find(|w| w.worker_id == wid));
            let restarted = worker.is_some_and(|w| w.restarted);
            info!(target: "app", "event dead wid={wid} code={code} restarted={restarted}");
            Ok(())
        });
    }
    if flag("APP_MANAGER_CALLS") {
        // Each call that acts on the manager, made in a worker: each must
        // fail, and say why.
        let handle = manager.handle();
        manager.on_new_worker(move |service, wid, _| {
            let pid = std::process::id();
            let say = |call: &str, r: Result<(), cotyledon::Error>| match r {
                Ok(()) => info!(target: "app", "event worker-call {call} wid={wid} pid={pid} ok"),
                Err(e) => info!(target: "app", "event worker-call {call} wid={wid} pid={pid} error {e:?}: {e}"),
            };
            say("reconfigure", handle.reconfigure(service, 5));
            say("scale", handle.scale(service, 5));
            say("reload", handle.reload());
            say("restart", handle.restart(service, wid).map(drop));
            say("reset_limiter", handle.reset_limiter());
            say("set_graceful_shutdown_timeout", handle.set_graceful_shutdown_timeout(Duration::ZERO));
            say("shutdown", handle.shutdown());
            say("on_terminate", handle.on_terminate(|| Ok(())));
            say("on_reload", handle.on_reload(|| Ok(())));
            say("on_reload_check", handle.on_reload_check(|| Ok(())));
            say("on_new_worker", handle.on_new_worker(|_, _, _| Ok(())));
            say("on_dead_worker", handle.on_dead_worker(|_, _, _| Ok(())));
            info!(target: "app", "event worker-calls done wid={wid} workers={:?}", handle.workers(service));
            Ok(())
        });
    }
    if flag("APP_FOREIGN_CHILD") {
        // The application's own subprocess, which it reaps itself later:
        // the engine must neither take its status nor stall on it.
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let child = Mutex::new(Some(child));
        manager.on_dead_worker(move |_, _, _| {
            if let Some(mut c) = child.lock().unwrap().take() {
                let status = c.wait().expect("our own child's status is still ours");
                info!(target: "app", "event foreign child status={}", status.code().unwrap_or(-1));
            }
            Ok(())
        });
    }
    if flag("APP_THIEF") {
        // An application thread reaping any child, as some daemons do: it
        // blocks in waitpid(-1) and reports each status it took. With
        // APP_THIEF_ONCE it takes one and then idles (it stays alive).
        let once = flag("APP_THIEF_ONCE");
        std::thread::spawn(move || loop {
            match nix::sys::wait::waitpid(None, None) {
                Ok(status) => {
                    report_theft("thief", status);
                    if once && status.pid().is_some() {
                        loop {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
    }
    if flag("APP_HOOK_THIEF") {
        // A dead-worker hook that reaps any one child, once: with two
        // workers dead at the same wake, it takes the other's status.
        let done = AtomicBool::new(false);
        manager.on_dead_worker(move |_, _, _| {
            if !done.swap(true, Ordering::Relaxed) {
                let flags = nix::sys::wait::WaitPidFlag::WNOHANG;
                if let Ok(status) = nix::sys::wait::waitpid(None, Some(flags)) {
                    report_theft("hook thief", status);
                }
            }
            Ok(())
        });
    }
    if flag("APP_REPORT_FDS") {
        info!(target: "app", "event master fds {}", open_fds());
    }
    // The application's own handler, as OpenStack daemons install for
    // their report dumps: it must keep running under the engine.
    let usr2 = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let usr2 = std::sync::Arc::clone(&usr2);
        // SAFETY: the action only increments an atomic.
        unsafe {
            signal_hook::low_level::register(libc::SIGUSR2, move || {
                usr2.fetch_add(1, Ordering::Relaxed);
            })
        }
        .expect("SIGUSR2 handler");
    }
    match manager.init_pid() {
        Some(init) => info!(target: "app", "event master pid={} init={init}", std::process::id()),
        None => info!(target: "app", "event master pid={}", std::process::id()),
    }
    let result = if flag("APP_RUN_IN_THREAD") {
        // The master loop on another thread: the main one only waits.
        std::thread::spawn(move || manager.run())
            .join()
            .expect("run thread")
    } else {
        manager.run()
    };
    match result {
        Ok(()) => {
            info!(target: "app", "event master usr2={}", usr2.load(Ordering::Relaxed));
            info!(target: "app", "event master done");
            if let Some(code) = env_num("APP_DONE_EXIT") {
                std::process::exit(code as i32);
            }
            if flag("APP_LINGER") {
                // Signals get their default effect back after run().
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Err(cotyledon::Error::Stopped { status, reason }) => {
            info!(target: "app", "event master stopped status={status} reason={reason}");
            std::process::exit(status);
        }
        Err(e) => {
            info!(target: "app", "event master error {e}");
            std::process::exit(3);
        }
    }
}
