"""Helper applications of the scenario tests: ``python app.py SCENARIO [ARGS]``.

Each scenario is an ordinary Cotyledon program. Besides the library's own log
lines, it logs structured events on the ``app`` logger:
``INFO:app:EV <event> key=value ...`` (pid= is always included), which the
tests parse (see conftest.App.event).
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import cotyledon

logging.basicConfig(
    level=logging.DEBUG,
    format="%(levelname)s:%(name)s:%(message)s",
    stream=sys.stdout,
)
LOG = logging.getLogger("app")


def ev(event: str, **kw: object) -> None:
    kw.setdefault("pid", os.getpid())
    LOG.info("EV %s %s", event, " ".join(f"{k}={v}" for k, v in kw.items()))


class Basic(cotyledon.Service):
    name = "basic"

    def __init__(self, worker_id, tag="none"):
        super().__init__(worker_id)
        self._stop = threading.Event()
        ev("init", name=self.name, wid=worker_id, tag=tag)

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        self._stop.wait()

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        self._stop.set()


class Other(Basic):
    name = "other"


class Exit42(Basic):
    name = "exit42"

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        raise SystemExit(42)


def _hooks_logging(manager, sid_map):
    def on_dead_worker(service_id, worker_id, exit_code):
        ev(
            "dead_hook",
            sid_type=type(service_id).__name__,
            service=sid_map.get(service_id, "unknown"),
            wid=worker_id,
            wid_type=type(worker_id).__name__,
            code=exit_code,
        )

    def on_new_worker(service_id, worker_id, service):
        ev(
            "new_worker_hook",
            service=sid_map.get(service_id, "unknown"),
            wid=worker_id,
            svc=type(service).__name__,
            svc_wid=service.worker_id,
        )

    manager.register_hooks(on_dead_worker=on_dead_worker, on_new_worker=on_new_worker)


# --------------------------------------------------------------------------
def scenario_ids(argv):
    """3 'basic' workers (arg tag), 1 'exit42' worker, logging hooks."""
    m = cotyledon.ServiceManager()
    sid = m.add(Basic, workers=3, args=("t1",))
    sid42 = m.add(Exit42, workers=1)
    _hooks_logging(m, {sid: "basic", sid42: "exit42"})
    ev("manager", sid_type=type(sid).__name__, distinct=sid != sid42)
    m.run()


class BadSuper(cotyledon.Service):
    name = "badsuper"

    def __init__(self, worker_id):
        super().__init__()  # forgot worker_id


class NoParam(cotyledon.Service):
    name = "noparam"

    def __init__(self):  # forgot the worker_id parameter
        super().__init__(0)


def scenario_no_worker_id(argv):
    variant = argv[0]
    m = cotyledon.ServiceManager()
    m.add(Basic, workers=1)
    m.add(BadSuper if variant == "super" else NoParam, workers=1)
    _hooks_logging(m, {})
    m.run()


class CrashOnce(Basic):
    """run() raises the first time (marker file absent), then runs."""

    name = "crash"
    marker = ""

    def run(self):
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            ev("crashing", wid=self.worker_id)
            raise RuntimeError("boom in run")
        super().run()


class SysExit(Basic):
    """run() calls sys.exit() with the code given (a message, or none)."""

    name = "sysexit"
    code: object = None

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        sys.exit(self.code)


def scenario_sys_exit(argv):
    """``sys_exit none|MESSAGE``: 1 worker whose run() calls sys.exit()."""
    SysExit.code = None if argv[0] == "none" else argv[0]
    m = cotyledon.ServiceManager()
    m.add(SysExit, workers=1)
    m.run()


def scenario_crash_run(argv):
    CrashOnce.marker = argv[0]
    m = cotyledon.ServiceManager()
    m.add(CrashOnce, workers=1)
    m.run()


class WithReload(Basic):
    name = "withreload"

    def reload(self):
        ev("reload", name=self.name, wid=self.worker_id)


class Plain(cotyledon.Service):
    name = "plain"

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)


class SlowTerm(Basic):
    name = "slowterm"

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        time.sleep(1.5)
        ev("terminate_done", name=self.name, wid=self.worker_id)
        self._stop.set()

    def reload(self):
        ev("reload", name=self.name, wid=self.worker_id)


def scenario_reload(argv):
    m = cotyledon.ServiceManager()
    m.add(WithReload, workers=1)
    m.add(Plain, workers=1)
    m.add(SlowTerm, workers=1)
    m.add(Basic, workers=4)  # keeps the fork-rate limiter out of the way
    m.register_hooks(on_reload=lambda: ev("master_reload"))
    m.run()


def scenario_graceful(argv):
    m = cotyledon.ServiceManager()
    m.add(Basic, workers=2)
    m.add(Other, workers=1)
    m.register_hooks(on_terminate=lambda: ev("term_hook", n=1))
    m.register_hooks(on_terminate=lambda: ev("term_hook", n=2))
    m.run()


class Hang(Basic):
    name = "hang"
    graceful_shutdown_timeout = 1

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        time.sleep(60)
        ev("terminate_done", name=self.name, wid=self.worker_id)


class HangForever(Hang):
    name = "hangforever"
    graceful_shutdown_timeout = 0


def scenario_hang(argv):
    m = cotyledon.ServiceManager()
    m.add(Hang, workers=1)
    m.run()


def scenario_master_timeout(argv):
    m = cotyledon.ServiceManager(graceful_shutdown_timeout=1)
    m.add(HangForever, workers=1)
    m.run()


class MyManager(cotyledon.ServiceManager):
    def __init__(self):
        super().__init__()
        self.register_hooks(on_reload=self.reload)
        self.service_id = self.add(Basic, workers=2)
        self.steps = [4, 1]

    def reload(self):
        if self.steps:
            n = self.steps.pop(0)
            ev("reconfigure", workers=n)
            self.reconfigure(self.service_id, n)

    def run(self):
        ev("mymanager_run")
        super().run()


def scenario_subclass(argv):
    MyManager().run()


def scenario_hook_errors(argv):
    m = cotyledon.ServiceManager()
    sid = m.add(WithReload, workers=1)

    def boom(*args):
        raise ValueError("hook boom")

    m.register_hooks(on_reload=boom, on_terminate=boom, on_new_worker=boom, on_dead_worker=boom)
    m.register_hooks(
        on_reload=lambda: ev("reload_hook2"),
        on_terminate=lambda: ev("terminate_hook2"),
        on_new_worker=lambda *a: ev("new_worker_hook2"),
        on_dead_worker=lambda *a: ev("dead_worker_hook2"),
    )
    ev("manager", sid=sid)
    m.run()


def scenario_shutdown_hook(argv):
    m = cotyledon.ServiceManager()
    special = m.add(Other, workers=1)
    m.add(Basic, workers=2)

    def on_dead_worker(service_id, worker_id, exit_code):
        ev("dead_hook", special=service_id == special, code=exit_code)
        if service_id == special:
            m.shutdown()
            ev("shutdown_returned_in_hook")

    m.register_hooks(on_dead_worker=on_dead_worker)
    _run_catching(m)


def scenario_late_hook(argv):
    """An on_dead_worker hook registered by an on_reload hook, while run()
    runs."""
    m = cotyledon.ServiceManager()
    m.add(WithReload, workers=4)

    def on_dead_worker(service_id, worker_id, exit_code):
        ev("dead_hook", wid=worker_id, code=exit_code)

    def on_reload():
        m.register_hooks(on_dead_worker=on_dead_worker)
        ev("hook_registered")

    m.register_hooks(on_reload=on_reload)
    m.run()


def _run_catching(m):
    try:
        m.run()
    except SystemExit as e:
        ev("run_exit", type=type(e).__name__, code=e.code)
        m.shutdown()
        ev("second_shutdown_returned")
        raise
    ev("run_returned")


def scenario_shutdown_thread(argv):
    trigger = argv[0]
    m = cotyledon.ServiceManager()
    m.add(Basic, workers=2)

    def waiter():
        deadline = time.monotonic() + 60
        while not os.path.exists(trigger) and time.monotonic() < deadline:
            time.sleep(0.02)
        ev("thread_shutdown")
        m.shutdown()
        ev("thread_shutdown_returned")

    threading.Thread(target=waiter, daemon=True).start()
    _run_catching(m)


WORKER_CALLS = {}


class WorkerCalls(Basic):
    """Its first worker calls the manager: reconfigure(), then shutdown()."""

    name = "worker_calls"

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        marker = WORKER_CALLS["marker"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            m = WORKER_CALLS["manager"]
            sid = WORKER_CALLS["sid"]
            try:
                m.reconfigure(sid, 3)
            except Exception as e:  # noqa: BLE001
                ev("worker_reconfigure", result=type(e).__name__)
            else:
                ev("worker_reconfigure", result="ok")
            ev("worker_shutdown")
            threading.Thread(target=m.shutdown, daemon=True).start()
        self._stop.wait()


def scenario_worker_calls(argv):
    """Manager calls made in a worker, as under Cotyledon."""
    m = cotyledon.ServiceManager()
    WORKER_CALLS.update(manager=m, marker=argv[0], sid=m.add(WorkerCalls, workers=1))
    m.run()


def _check(results, name, func):
    try:
        value = func()
    except BaseException as e:  # noqa: BLE001
        results[name] = [type(e).__name__, str(e)]
    else:
        results[name] = ["ok", repr(value) if not isinstance(value, uuid.UUID) else "UUID"]


def scenario_bad_input(argv):
    results = {}
    m = cotyledon.ServiceManager()
    _check(results, "add_str", lambda: m.add("foo"))
    _check(results, "add_workers_0", lambda: m.add(Basic, workers=0))
    _check(results, "add_workers_str", lambda: m.add(Basic, workers="2"))
    _check(results, "add_workers_none", lambda: m.add(Basic, workers=None))
    _check(results, "add_workers_neg", lambda: m.add(Basic, workers=-2))
    _check(results, "add_workers_float", lambda: m.add(Basic, workers=1.5))
    sid = m.add(Basic, workers=3)
    results["sid_type"] = type(sid).__name__
    unknown = uuid.UUID("12345678-1234-5678-1234-567812345678")
    _check(results, "reconf_unknown", lambda: m.reconfigure(unknown, 2))
    _check(results, "reconf_str", lambda: m.reconfigure("notexists", 2))
    _check(results, "reconf_low", lambda: m.reconfigure(sid, -5))
    _check(results, "reconf_min", lambda: m.reconfigure(sid, -2))
    _check(results, "reconf_ok", lambda: m.reconfigure(sid, 5))
    _check(results, "second_manager", cotyledon.ServiceManager)
    for hook in ("on_terminate", "on_reload", "on_new_worker", "on_dead_worker"):
        _check(results, f"hook_{hook}", lambda: m.register_hooks(**{hook: "x"}))
    _check(results, "hooks_none", lambda: m.register_hooks())

    # Many add() at once from several threads before run().
    ids = []
    lock = threading.Lock()

    def adder():
        for _ in range(20):
            sid = m.add(Basic, workers=1)
            with lock:
                ids.append(sid)

    threads = [threading.Thread(target=adder) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results["thread_adds"] = [len(ids), len(set(ids))]

    # Public API bits.
    class Unnamed(cotyledon.Service):
        pass

    results["default_name"] = Unnamed.name
    results["named"] = Basic.name
    results["default_gst"] = repr(Unnamed.graceful_shutdown_timeout)
    results["mp_context_start_method"] = m.mp_context.get_start_method()
    import multiprocessing

    results["mp_context_default"] = m.mp_context == multiprocessing.get_context()
    ctx = multiprocessing.get_context("fork")
    m.mp_context = ctx
    results["mp_context_assign"] = m.mp_context is ctx
    from cotyledon import types as ctypes_

    results["types"] = [ctypes_.ServiceId.__name__, ctypes_.WorkerId.__name__]
    __import__("cotyledon._utils")

    results["py_typed"] = os.path.exists(
        os.path.join(os.path.dirname(cotyledon.__file__), "py.typed")
    )
    # The reference's own tests reset the seatbelt this way.
    cotyledon.ServiceManager._process_runner_already_created = False
    _check(results, "after_reset", lambda: type(cotyledon.ServiceManager()).__name__)
    print("RESULTS " + json.dumps(results), flush=True)


class OsloService(cotyledon.Service):
    name = "oslo"
    conf = None

    def run(self):
        ev("run", wid=self.worker_id, foo=self.conf.foo, fixed=self.conf.fixed)

    def reload(self):
        ev("reload", wid=self.worker_id, foo=self.conf.foo, fixed=self.conf.fixed)

    def terminate(self):
        ev("terminate", wid=self.worker_id)
        if os.path.exists(self.hang_marker):
            time.sleep(60)  # ended by graceful_shutdown_timeout from the config


def scenario_oslo(argv):
    from oslo_config import cfg

    from cotyledon import oslo_config_glue

    config_file, method = argv[0], argv[1]
    conf = cfg.ConfigOpts()
    conf.register_opts(
        [cfg.StrOpt("foo", default="default", mutable=True), cfg.StrOpt("fixed", default="default")]
    )
    conf(["--config-file", config_file], project="cotyledon-test", validate_default_values=True)
    OsloService.conf = conf
    OsloService.hang_marker = config_file + ".hang"
    m = cotyledon.ServiceManager()
    oslo_config_glue.setup(m, conf, reload_method=method)
    m.register_hooks(on_reload=lambda: ev("master_conf", foo=conf.foo, fixed=conf.fixed))
    m.add(OsloService, workers=2)
    ev("master_conf", foo=conf.foo, fixed=conf.fixed, gst=conf.graceful_shutdown_timeout)
    m.run()


class EnvService(Basic):
    name = "env"

    def run(self):
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_char_p
        cenv = libc.getenv(b"NOTIFY_SOCKET")
        ev(
            "env",
            wid=self.worker_id,
            notify=os.environ.get("NOTIFY_SOCKET"),
            c_getenv=cenv.decode() if cenv is not None else None,
        )
        super().run()


def scenario_notify(argv):
    m = cotyledon.ServiceManager()
    m.add(EnvService, workers=2)
    m.run()


def _env_fields(names):
    """``{NAME: os.environ value, cNAME: C getenv value}`` for each of
    ``names`` ("-" when unset), as event fields."""
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    fields = {}
    for name in names:
        cval = libc.getenv(name.encode())
        fields[name] = os.environ.get(name, "-")
        fields["c" + name] = cval.decode() if cval is not None else "-"
    return fields


def _send_datagram(address, text):
    """What an application's own sd_notify does: ``text`` to ``address``
    (a path, or ``@name`` in the abstract namespace)."""
    import socket  # noqa: PLC0415

    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), target)


class SystemdEnv(Basic):
    """Logs the variables ``reported`` as its worker sees them (os.environ
    and C)."""

    name = "sd"
    reported = ()

    def run(self):
        ev("env", wid=self.worker_id, **_env_fields(self.reported))
        super().run()

    def reload(self):
        ev("reload", name=self.name, wid=self.worker_id)


def scenario_systemd(argv):
    """2 'sd' workers; ``systemd HOOK_SLEEP NAME...``: each worker logs the
    variables NAME... (``env`` events); the reload hook logs the master's
    (``hook_env``), then sends ``X-APP-HOOK=begin``, sleeps HOOK_SLEEP
    seconds and sends ``X-APP-HOOK=end`` to the notify socket, whose
    address it kept before run() (the master's os.environ loses
    NOTIFY_SOCKET once READY=1 went)."""
    hook_sleep = float(argv[0])
    SystemdEnv.reported = tuple(argv[1:])
    address = os.environ.get("NOTIFY_SOCKET")
    m = cotyledon.ServiceManager(graceful_shutdown_timeout=2, kill_grace=0.3)
    m.add(SystemdEnv, workers=2)

    def on_reload():
        ev("hook_env", **_env_fields(SystemdEnv.reported))
        _send_datagram(address, "X-APP-HOOK=begin")
        time.sleep(hook_sleep)
        _send_datagram(address, "X-APP-HOOK=end")

    m.register_hooks(on_reload=on_reload)
    m.run()


def _stubborn_children():
    """Two children that ignore SIGTERM and SIGINT, the second in a
    session of its own: their pids."""
    import subprocess  # noqa: PLC0415

    cmd = ["sh", "-c", "trap '' TERM INT; exec sleep 1000"]
    child = subprocess.Popen(cmd)
    escaped = subprocess.Popen(cmd, start_new_session=True)
    return child.pid, escaped.pid


class Wedged(Basic):
    """Ignores SIGTERM and SIGINT; its terminate() would hang; starts
    children that ignore them too."""

    name = "wedged"
    graceful_shutdown_timeout = 60

    def __init__(self, worker_id):
        super().__init__(worker_id)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def run(self):
        child, escaped = _stubborn_children()
        ev("wedged", wid=self.worker_id, child=child, escaped=escaped)
        self._stop.wait()

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        time.sleep(60)


def scenario_wedged(argv):
    """2 'wedged' workers; graceful timeout 1 s, kill grace 0.3 s."""
    m = cotyledon.ServiceManager(graceful_shutdown_timeout=1, kill_grace=0.3)
    m.add(Wedged, workers=2)
    m.run()


class Parent(Basic):
    """Starts children that ignore SIGTERM and SIGINT."""

    name = "parent"

    def run(self):
        child, escaped = _stubborn_children()
        ev("grandchildren", wid=self.worker_id, child=child, escaped=escaped)
        super().run()


def scenario_stubborn_grandchildren(argv):
    m = cotyledon.ServiceManager()
    m.add(Parent, workers=1)
    m.run()


def scenario_master_threads(argv):
    m = cotyledon.ServiceManager()
    sid = m.add(Basic, workers=2)
    _hooks_logging(m, {sid: "basic"})

    def ticker():
        n = 0
        while True:
            n += 1
            ev("tick", n=n)
            time.sleep(0.1)

    def foreign_waiter():
        # An application thread reaping children on its own.
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            ev("foreign_reaped", reaped=pid)

    threading.Thread(target=ticker, daemon=True).start()
    if argv and argv[0] == "waitpid":
        threading.Thread(target=foreign_waiter, daemon=True).start()

    def on_usr2(signum, frame):
        ev("usr2", thread=threading.current_thread().name)

    signal.signal(signal.SIGUSR2, on_usr2)
    m.run()


def scenario_sigterm_startup(argv):
    delay = float(argv[0])
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()
    m = cotyledon.ServiceManager()
    m.add(Basic, workers=10)
    m.run()


class Buffered(cotyledon.Service):
    name = "buffered"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        atexit.register(print, f"ATEXIT-WORKER {os.getpid()}", flush=True)

    def run(self):
        print(f"BUFFERED-RUN {os.getpid()} {self.worker_id}")
        sys.stderr.write(f"BUFFERED-ERR {os.getpid()}\n")
        ev("run", wid=self.worker_id)

    def terminate(self):
        print(f"BUFFERED-TERM {os.getpid()} {self.worker_id}")


def scenario_buffered(argv):
    atexit.register(print, f"ATEXIT-MASTER {os.getpid()}", flush=True)
    m = cotyledon.ServiceManager()
    m.add(Buffered, workers=2)
    m.run()


class Rand(Basic):
    name = "rand"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        ev("rand", wid=worker_id, value=repr(random.random()))


def scenario_random(argv):
    """3 workers report random.random() from a master seeded with 1234."""
    random.seed(1234)
    m = cotyledon.ServiceManager()
    m.add(Rand, workers=3)
    m.run()


def reporting_handler(event, worker_id):
    """A Python signal handler that logs ``event`` and whether it runs on
    the main thread."""

    def handler(signum, frame):
        # One write(2), not logging: a second signal may run this handler
        # again while the first is still inside the stdout buffer's flush,
        # where a nested write fails ("reentrant call"). Same line format.
        main = threading.current_thread() is threading.main_thread()
        line = f"INFO:app:EV {event} wid={worker_id} main={main} pid={os.getpid()}\n"
        os.write(sys.stdout.fileno(), line.encode())

    return handler


class WithHandlers(WithReload):
    """Installs the application's own Python signal handlers in the worker."""

    name = "handlers"

    def __init__(self, worker_id):
        super().__init__(worker_id)

        def on_usr2(signum, frame):
            raise SystemExit(7)

        signal.signal(signal.SIGUSR1, reporting_handler("usr1", worker_id))
        signal.signal(signal.SIGUSR2, on_usr2)


def scenario_worker_handlers(argv):
    """2 workers with their own SIGUSR1 (reports) and SIGUSR2 (exit 7)
    handlers; SIGHUP still reloads."""
    m = cotyledon.ServiceManager()
    m.add(WithHandlers, workers=2)
    m.run()


class OwnHup(WithReload):
    """Takes SIGHUP over in its constructor with its own Python handler."""

    name = "ownhup"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        signal.signal(signal.SIGHUP, reporting_handler("own_hup", worker_id))


def scenario_worker_own_hup(argv):
    """1 worker whose own SIGHUP handler replaces the manager's."""
    m = cotyledon.ServiceManager()
    m.add(OwnHup, workers=1)
    m.run()


class _AfterFork:
    """Marked by the callback the mp_identity master registers with
    ``multiprocessing.util.register_after_fork``."""

    forked = None


_AFTER_FORK = _AfterFork()


def _mark_forked(obj):
    obj.forked = os.getpid()


class MpIdentity(Basic):
    """Reports what ``multiprocessing`` says about the worker."""

    name = "mpid"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        import multiprocessing  # noqa: PLC0415

        parent = multiprocessing.parent_process()
        me = multiprocessing.current_process()
        ev(
            "mp",
            wid=worker_id,
            name=me.name,
            parent=parent.pid if parent is not None else None,
            ident=me.ident,
            authkey=bytes(me.authkey).hex(),
            daemon=me.daemon,
            alive=me.is_alive(),
            after_fork=_AFTER_FORK.forked == os.getpid(),
        )


def scenario_mp_identity(argv):
    """2 workers report their multiprocessing identity; the master first
    prints a line it does not flush (each worker would repeat a buffer it
    inherited)."""
    import multiprocessing  # noqa: PLC0415

    import multiprocessing.util  # noqa: PLC0415

    me = multiprocessing.current_process()
    ev("mp_master", authkey=bytes(me.authkey).hex(), daemon=me.daemon)
    multiprocessing.util.register_after_fork(_AFTER_FORK, _mark_forked)
    m = cotyledon.ServiceManager()
    m.add(MpIdentity, workers=2)
    print(f"MASTER-UNFLUSHED {os.getpid()}")
    m.run()


class LateDebug(Basic):
    """Worker 0 sets the engine's worker logger to DEBUG in its
    ``__init__``, long after the master's ``run()`` started."""

    name = "late"

    def __init__(self, worker_id):
        if worker_id == 0:
            logging.getLogger("cotyledon._service_worker").setLevel(logging.DEBUG)
        super().__init__(worker_id)


def scenario_late_debug(argv):
    """2 workers; the engine's worker logger is at INFO when run() starts,
    worker 0 sets it to DEBUG in its own process."""
    logging.getLogger("cotyledon._service_worker").setLevel(logging.INFO)
    m = cotyledon.ServiceManager()
    m.add(LateDebug, workers=2)
    m.run()


def scenario_stdout_swap(argv):
    """1 worker; the master's dead-worker hook gives the master a new
    ``sys.stdout`` and prints a line on it that it does not flush: the
    worker forked next must not inherit that buffer (it would repeat it)."""
    m = cotyledon.ServiceManager()
    m.add(MpIdentity, workers=1)

    def on_dead_worker(service_id, worker_id, exit_code):  # noqa: ARG001
        sys.stdout = io.TextIOWrapper(
            open(os.dup(1), "wb", buffering=4096),  # noqa: PTH123, SIM115
            line_buffering=False,
        )
        print(f"MASTER-SWAPPED {os.getpid()}")

    m.register_hooks(on_dead_worker=on_dead_worker)
    m.run()


def _status_line(origin, manager):
    """Logs ``STATUS <origin> <json>``: manager.status() as JSON (the
    service's ``service_id`` as its string)."""
    import dataclasses  # noqa: PLC0415

    st = manager.status()
    data = dataclasses.asdict(st)
    data["healthy"] = st.healthy
    line = f"STATUS {origin} {json.dumps(data, default=str)}\n"
    os.write(sys.stdout.fileno(), line.encode())


def scenario_status(argv):
    """2 'withreload' workers; status() read before run(), from the reload
    hook (SIGHUP) and from a thread (when the file argv[0] appears)."""
    trigger = argv[0]
    m = cotyledon.ServiceManager()
    sid = m.add(WithReload, workers=2)
    ev("manager", sid=sid)
    _status_line("before", m)
    m.register_hooks(on_reload=lambda: _status_line("hook", m))

    def watcher():
        deadline = time.monotonic() + 60
        while not os.path.exists(trigger) and time.monotonic() < deadline:
            time.sleep(0.02)
        _status_line("thread", m)

    threading.Thread(target=watcher, daemon=True).start()
    m.run()


class Ops(WithReload):
    name = "ops"


def scenario_ops(argv):
    """2 'ops' workers and 1 'other'. ``ops SOCKET [METRICS INTERVAL]``
    passes the control socket (and metrics file) to the manager;
    ``ops`` alone is an unmodified application: ``ServiceManager()``.
    SIGUSR1 calls reconfigure(ops, -2) in the master and logs the outcome."""
    if argv:
        kwargs = {"control_socket": argv[0]}
        if len(argv) > 1:
            kwargs.update(metrics_file=argv[1], metrics_interval=float(argv[2]))
        m = cotyledon.ServiceManager(**kwargs)
    else:
        m = cotyledon.ServiceManager()
    sid = m.add(Ops, workers=2)
    m.add(Other, workers=1)
    m.register_hooks(
        on_reload=lambda: ev("master_reload"), on_terminate=lambda: ev("term_hook")
    )

    def on_usr1(signum, frame):
        try:
            m.reconfigure(sid, -2)
        except ValueError as e:
            ev("reconfigure", result="ValueError", msg=str(e).replace(" ", "_"))
        else:
            ev("reconfigure", result="ok")

    signal.signal(signal.SIGUSR1, on_usr1)
    ev("manager", sid=sid)
    _run_catching(m)


def scenario_ops_kwargs(argv):
    """Bad keyword arguments of ServiceManager and _core.ctl_main: prints
    ``RESULTS <json>`` of each outcome."""
    import pathlib  # noqa: PLC0415

    from cotyledon import _core  # noqa: PLC0415

    results = {}
    sm = cotyledon.ServiceManager
    cases = {
        "socket_int": lambda: sm(control_socket=3),
        "socket_bytes": lambda: sm(control_socket=b"/tmp/x.sock"),
        "socket_empty": lambda: sm(control_socket=""),
        "socket_nul": lambda: sm(control_socket="/tmp/a\0b"),
        "socket_long": lambda: sm(control_socket="/tmp/" + "s" * 200),
        "socket_positional": lambda: sm(0.01, 60, None, "/tmp/x.sock"),
        "metrics_list": lambda: sm(metrics_file=["/tmp/m.prom"]),
        "metrics_empty": lambda: sm(metrics_file=""),
        "interval_str": lambda: sm(metrics_interval="5"),
        "interval_bool": lambda: sm(metrics_interval=True),
        "interval_none": lambda: sm(metrics_interval=None),
        "interval_zero": lambda: sm(metrics_interval=0),
        "interval_neg": lambda: sm(metrics_interval=-1.5),
        "interval_nan": lambda: sm(metrics_interval=float("nan")),
        "interval_inf": lambda: sm(metrics_interval=float("inf")),
        "grace_str": lambda: sm(kill_grace="0.5"),
        "grace_bool": lambda: sm(kill_grace=False),
        "grace_none": lambda: sm(kill_grace=None),
        "grace_neg": lambda: sm(kill_grace=-0.1),
        "grace_nan": lambda: sm(kill_grace=float("nan")),
        "grace_inf": lambda: sm(kill_grace=float("inf")),
        "engine_grace": lambda: _core.Engine(kill_grace=-1.0),
        "unknown_kwarg": lambda: sm(control_sock="/tmp/x.sock"),
        "engine_interval": lambda: _core.Engine(metrics_interval=0.0),
        "engine_socket_empty": lambda: _core.Engine(control_socket=""),
        "engine_socket_int": lambda: _core.Engine(control_socket=5),
        "ctl_main_str": lambda: _core.ctl_main("status"),
        "ctl_main_ints": lambda: _core.ctl_main([1, 2]),
    }
    for name, func in cases.items():
        _check(results, name, func)
    # None of them took the one manager a process may create.
    _check(
        results,
        "valid",
        lambda: type(
            sm(
                control_socket=pathlib.Path("/tmp/ok.sock"),
                metrics_file="/tmp/ok.prom",
                metrics_interval=1,
                kill_grace=0,
            )
        ).__name__,
    )
    print("RESULTS " + json.dumps(results), flush=True)


class Orphaner(Basic):
    """Each worker leaves a grandchild behind, dead at once: an orphan
    only an init reaps."""

    name = "orphaner"

    def run(self):
        out = subprocess.run(
            ["sh", "-c", "sh -c 'exit 0' & echo $!"], capture_output=True, text=True, check=True
        )
        ev("orphan", wid=self.worker_id, orphan=out.stdout.strip())
        super().run()


def scenario_pid1(argv):
    """``pid1 MODE EXIT``: ``ServiceManager(init=...)`` (MODE ``auto``:
    None, ``always``: True, ``never``: False), two Orphaner workers; the
    master runs a subprocess of its own (its status must stay the
    master's), and exits with EXIT after a graceful stop."""
    init = {"auto": None, "always": True, "never": False}[argv[0]]
    m = cotyledon.ServiceManager(init=init)
    m.add(Orphaner, workers=2)
    m.register_hooks(
        on_terminate=lambda: ev("term_hook"),
        on_reload=lambda: ev("reload_hook", init_pid=m.status().init_pid),
    )
    ev("master", ppid=os.getppid())
    ev("master_subprocess", rc=subprocess.run(["sh", "-c", "exit 3"], check=False).returncode)
    try:
        m.run()
    except SystemExit as e:
        ev("run_exit", code=e.code)
    sys.exit(int(argv[1]))


class Recorder(Basic):
    """Writes its pid into a ``multiprocessing.Manager()`` dict."""

    name = "recorder"

    def __init__(self, worker_id, shared):
        super().__init__(worker_id)
        shared[worker_id] = os.getpid()
        ev("recorded", wid=worker_id)


class KuryrLike(cotyledon.ServiceManager):
    """As kuryr's: a ``multiprocessing.Manager()`` made in ``__init__``
    after ``super().__init__()``, shared with the workers."""

    def __init__(self):
        super().__init__()
        self.mp_manager = multiprocessing.Manager()
        self.shared = self.mp_manager.dict()
        self.add(Recorder, workers=2, args=(self.shared,))
        self.register_hooks(on_reload=self._report)

    def _report(self):
        ev("shared", pids=",".join(str(self.shared[w]) for w in sorted(self.shared.keys())))


def scenario_pid1_kuryr(argv):
    """A KuryrLike manager (run as PID 1 by the test): the workers and the
    master reach the multiprocessing manager the master made."""
    m = KuryrLike()
    server = m.mp_manager._process.pid  # noqa: SLF001
    with open(f"/proc/{server}/stat") as f:
        server_ppid = f.read().rsplit(")", 1)[1].split()[1]
    ev("master", ppid=os.getppid(), mp_server_ppid=server_ppid)
    _run_catching(m)


def scenario_init_kwargs(argv):
    """Bad ``init`` values and ``COTYLEDON_INIT``: prints ``RESULTS <json>``;
    none takes the one manager a process may create."""
    results = {}
    sm = cotyledon.ServiceManager
    _check(results, "init_str", lambda: sm(init="yes"))
    _check(results, "init_int", lambda: sm(init=1))
    os.environ["COTYLEDON_INIT"] = "sometimes"
    _check(results, "env_bad", lambda: sm())
    from cotyledon import _core  # noqa: PLC0415

    _check(results, "env_bad_engine", lambda: _core.Engine(init=None))
    # An explicit choice does not read the environment.
    _check(results, "valid", lambda: type(sm(init=False)).__name__)
    print("RESULTS " + json.dumps(results), flush=True)


class Codes(WithReload):
    """run() ends worker ``wid`` with the wid-th code of ``codes`` (``-``:
    it runs); reload() only logs."""

    name = "policy"
    codes: list[str] = []

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        if self.worker_id < len(self.codes) and self.codes[self.worker_id] != "-":
            raise SystemExit(int(self.codes[self.worker_id]))
        self._stop.wait()


class Restarting(Basic):
    """The default reload(): the worker restarts."""

    name = "policy"


def scenario_policy(argv):
    """``policy KIND CODES [SOCKET]``: a 'policy' service of as many
    workers as CODES (comma-separated) has, with the restart policy KIND
    names; logs ``STATUS hook <json>`` on SIGHUP (except ``restarting``)."""
    kind, codes = argv[0], argv[1].split(",")
    Codes.codes = codes
    kwargs = {"control_socket": argv[2]} if len(argv) > 2 else {}
    m = cotyledon.ServiceManager(**kwargs)
    fast = cotyledon.Backoff(0.02, 0.02, jitter=0)
    policies = {
        "on_failure": {"restart": "on-failure", "backoff": fast},
        "stop_on_exit": {"restart": "never", "stop_on_exit": True},
        "give_up": {"backoff": fast, "give_up": cotyledon.GiveUp(3, 60)},
        "backoff": {"backoff": cotyledon.Backoff(0.05, 0.2, jitter=0, stable=60)},
        "restarting": {"restart": "never", "stop_on_exit": True},
    }
    service = Restarting if kind == "restarting" else Codes
    sid = m.add(service, workers=len(codes), **policies[kind])
    ev("manager", sid=sid)
    if kind != "restarting":
        m.register_hooks(on_reload=lambda: _status_line("hook", m))
    _run_catching(m)


def scenario_policy_kwargs(argv):
    """Bad policy arguments of ServiceManager.add, cotyledon.Backoff and
    cotyledon.GiveUp: prints ``RESULTS <json>`` of each outcome."""
    results = {}
    m = cotyledon.ServiceManager()
    add = m.add
    B, G = cotyledon.Backoff, cotyledon.GiveUp  # noqa: N806
    cases = {
        "restart_bad": lambda: add(Basic, restart="sometimes"),
        "restart_case": lambda: add(Basic, restart="Always"),
        "restart_int": lambda: add(Basic, restart=1),
        "restart_none": lambda: add(Basic, restart=None),
        "restart_positional": lambda: add(Basic, 1, None, None, "never"),
        "stop_on_exit_int": lambda: add(Basic, stop_on_exit=1),
        "stop_on_exit_none": lambda: add(Basic, stop_on_exit=None),
        "backoff_tuple": lambda: add(Basic, backoff=(1, 2)),
        "give_up_int": lambda: add(Basic, give_up=3),
        "unknown_kwarg": lambda: add(Basic, restarts="never"),
        "backoff_zero": lambda: B(0, 1),
        "backoff_max_below": lambda: B(2, 1),
        "backoff_str": lambda: B("1", 2),
        "backoff_bool": lambda: B(True, 2),
        "backoff_nan": lambda: B(float("nan"), 2),
        "backoff_jitter_one": lambda: B(1, 2, jitter=1),
        "backoff_jitter_str": lambda: B(1, 2, jitter="0.1"),
        "backoff_stable_neg": lambda: B(1, 2, stable=-1),
        "backoff_positional_jitter": lambda: B(1, 2, 0.1),
        "give_up_zero": lambda: G(0, 1),
        "give_up_float": lambda: G(1.5, 1),
        "give_up_window_zero": lambda: G(3, 0),
        "give_up_window_inf": lambda: G(3, float("inf")),
        "valid": lambda: add(
            Basic, 2, restart="on-failure", stop_on_exit=True, backoff=B(0.5, 30), give_up=G(5, 60)
        ),
        "valid_default": lambda: add(Other, restart="always"),
    }
    for name, func in cases.items():
        _check(results, name, func)
    st = m.status()
    results["services"] = [
        [s.name, s.policy.restart, s.policy.stop_on_exit, repr(s.policy.backoff), repr(s.policy.give_up)]
        for s in st.services
    ]
    results["reprs"] = [repr(B(0.5, 30)), repr(G(5, 60)), B(1, 2) == B(1.0, 2.0), cotyledon.GIVE_UP_STATUS]
    print("RESULTS " + json.dumps(results), flush=True)


_CHECK_TERMINATE = False


def _child_target():
    pass


def _started_then_sleep(started):
    started.set()
    time.sleep(30)


def _forked_children(where):
    """Processes forked from the calling thread (an engine thread the
    service logged from, so Python knows it as a dummy thread): their exit
    statuses as events."""
    import multiprocessing  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    # 3.12+ warns of any fork from a process with threads (a worker has
    # some, under the reference too); the test suite makes it an error.
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    import concurrent.futures  # noqa: PLC0415

    proc = multiprocessing.Process(target=_child_target)
    proc.start()
    proc.join(20)
    terminated = "unchecked"
    if _CHECK_TERMINATE:
        # Process.terminate() ends a child (SIGTERM is not the engine's there).
        started = multiprocessing.Event()
        sleeper = multiprocessing.Process(target=_started_then_sleep, args=(started,))
        sleeper.start()
        started.wait(20)
        sleeper.terminate()
        sleeper.join(20)
        terminated = sleeper.exitcode
        if terminated is None:
            sleeper.kill()
            sleeper.join(20)
    with multiprocessing.Pool(1) as pool:
        pool_result = sum(pool.map(abs, [-1, -2]))
    with concurrent.futures.ProcessPoolExecutor(1) as executor:
        executor_result = sum(executor.map(abs, [-3, -4]))
    pid = os.fork()
    if pid == 0:
        sys.exit(3)
    _, status = os.waitpid(pid, 0)
    sub = subprocess.run([sys.executable, "-c", "pass"], timeout=20).returncode
    ev(
        "forked",
        where=where,
        mp=proc.exitcode,
        mp_terminated=terminated,
        pool=pool_result,
        executor=executor_result,
        fork_exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status),
        subprocess=sub,
    )


class Forking(Basic):
    name = "forking"

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        _forked_children("run")
        self._stop.wait()

    def reload(self):
        ev("reload", name=self.name, wid=self.worker_id)
        _forked_children("reload")

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        _forked_children("terminate")
        self._stop.set()


def scenario_grandchildren(argv):
    """1 'forking' worker: run(), reload() and terminate() each start a
    multiprocessing.Process, an os.fork() child ending in sys.exit(3) and a
    subprocess, and log their exit statuses; so does the master's
    on_reload hook. ``grandchildren terminate``: each also starts a
    process and ends it with Process.terminate()."""
    global _CHECK_TERMINATE  # noqa: PLW0603
    _CHECK_TERMINATE = argv == ["terminate"]
    m = cotyledon.ServiceManager()
    m.add(Forking, workers=1)
    m.register_hooks(on_reload=lambda: _forked_children("hook"))
    m.run()


class KuryrLikeManager(cotyledon.ServiceManager):
    """kuryr-daemon's ordered shutdown: its terminate hook scales the
    server service to 0, then terminates and joins each of its workers
    through ``self._running_services`` before the others stop."""

    def __init__(self):
        super().__init__()
        self.server_id = self.add(Basic, workers=2)
        self.other_id = self.add(Other, workers=1)
        self.register_hooks(on_terminate=self.terminate)
        _hooks_logging(self, {self.server_id: "basic", self.other_id: "other"})
        signal.signal(signal.SIGUSR1, self._stop_first)

    def _stop_first(self, signum, frame):
        # In the master's loop, outside any shutdown: the engine must
        # still see this worker's end (and respawn it) after join().
        for process, (worker_id, _started) in list(self._running_services[self.server_id].items()):
            if worker_id == 0:
                process.terminate()
                process.join(10)
                ev("joined_one", wid=worker_id, worker_pid=process.pid,
                   exitcode=process.exitcode)

    def terminate(self):
        self.reconfigure(self.server_id, 0)
        running = self._running_services
        ev("running", services=len(running), server=len(running[self.server_id]),
           other=len(running[self.other_id]))
        for process, (worker_id, _started) in sorted(
            self._running_services[self.server_id].items(), key=lambda kv: kv[1].worker_id
        ):
            alive = process.is_alive()
            process.terminate()
            process.join(10)
            ev("joined", wid=worker_id, worker_pid=process.pid, alive_before=alive,
               alive_after=process.is_alive(), exitcode=process.exitcode)
        ev("hook_done")


def scenario_kuryr(argv):
    KuryrLikeManager().run()


class _RecordLines(logging.Handler):
    """Writes each record of the ``cotyledon.*`` loggers to stdout as
    ``REC <json>``: its template, args and call site."""

    def emit(self, record):
        args = record.args
        data = {
            "name": record.name,
            "levelname": record.levelname,
            "msg": record.msg,
            "args": args if isinstance(args, dict) else list(args or ()),
            "module": record.module,
            "funcName": record.funcName,
            "filename": record.filename,
            "lineno": record.lineno,
            "message": record.getMessage(),
            "exc": record.exc_info is not None,
            "pid": os.getpid(),
        }
        line = "REC " + json.dumps(data, default=repr) + "\n"
        os.write(sys.stdout.fileno(), line.encode())


class Records(Basic):
    """exit42 once (marker), crash once in run() (marker), hangs in
    terminate past its graceful timeout."""

    name = "records"
    graceful_shutdown_timeout = 1
    markers = ""

    def run(self):
        if self.worker_id == 1:
            marker = self.markers + ".42"
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise SystemExit(42)
        if self.worker_id == 2:
            marker = self.markers + ".crash"
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("boom in run")
        super().run()

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        if self.worker_id == 0:
            time.sleep(30)
        self._stop.set()


def scenario_records(argv):
    """3 'records' workers; every cotyledon.* record is also written as
    ``REC <json>``. ``records MARKERS [master_timeout]``; a failing
    on_reload hook."""
    logging.getLogger("cotyledon").addHandler(_RecordLines())
    Records.markers = argv[0]
    gst = 1 if argv[1:] == ["master_timeout"] else 60
    if gst == 1:
        Records.graceful_shutdown_timeout = 0
    m = cotyledon.ServiceManager(graceful_shutdown_timeout=gst)
    m.add(Records, workers=3)

    def boom():
        raise ValueError("hook boom")

    m.register_hooks(on_reload=boom)
    threading.Thread(target=_shutdown_on_file, args=(m, argv[0] + ".stop"), daemon=True).start()
    m.run()


def _shutdown_on_file(m, path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(path):
        m.shutdown()


if __name__ == "__main__":
    globals()["scenario_" + sys.argv[1]](sys.argv[2:])
