"""PID 1 and containers: a master created as PID 1 of a new PID namespace
(``unshare --pid --fork --mount-proc``, as a container runtime starts a
program without ``--init``) splits off an init that reaps the orphans,
forwards signals to the master and exits with its status; ``init=True``
does the same without a namespace, the init then being a subreaper."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import APPS, DEADLINE, App, TimeoutExpired, proc_stat, scenario_results

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE[:3], "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(
    not _can_unshare(), reason="needs root and unshare(1) for a PID namespace"
)


def _first_child(pid: int) -> int:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
            if children:
                return int(children[0])
        time.sleep(0.005)
    raise TimeoutExpired(f"{pid} has no child")


def _pid_ns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def _ns_members(ns: str) -> list[tuple[int, str]]:
    """(host pid, state) of every process of PID namespace ns."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            st = proc_stat(int(entry))
            if st is not None:
                out.append((int(entry), st[0]))
    return out


def _wait_ns(ns: str, count: int) -> None:
    """Wait until namespace ns holds count processes, none a zombie."""
    deadline = time.monotonic() + DEADLINE
    while True:
        members = _ns_members(ns)
        if len(members) == count and all(state != "Z" for _, state in members):
            return
        if time.monotonic() > deadline:
            raise TimeoutExpired(f"namespace should hold {count} live processes: {members}")
        time.sleep(0.01)


@pytest.fixture
def app_under():
    """app_under(prefix, *args): app.py run as the last arguments of prefix;
    its process group (and the namespace with it) killed at the end."""
    apps: list[App] = []

    def start(prefix: list[str], *args: str) -> App:
        app = App([*prefix, sys.executable, os.path.join(APPS, "app.py"), *args])
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.kill_all()


@needs_unshare
def test_pid1_reaps_orphans_forwards_sigterm_and_exits_with_the_status(app_under):
    app = app_under(UNSHARE, "pid1", "auto", "7")
    master = app.event("master")
    # Inside the namespace: the init is PID 1, the master its first fork.
    assert (master["pid"], master["ppid"]) == ("2", "1")
    # The master's own subprocess keeps its status (the init reaps only
    # what is its own child).
    assert app.event("master_subprocess")["rc"] == "3"
    assert len([app.event("orphan", wid=w) for w in (0, 1)]) == 2
    init = _first_child(app.pid)
    ns = _pid_ns(init)
    assert ns != _pid_ns(os.getpid())
    # init, master, two workers: both orphans reaped, no zombie.
    _wait_ns(ns, 4)

    os.kill(init, signal.SIGTERM)
    app.event("term_hook")
    assert app.event("run_exit")["code"] == "0"
    assert app.wait_exit() == 7, app.dump()
    _wait_ns(ns, 0)


@needs_unshare
def test_pid1_killed_master_gives_128_plus_the_signal(app_under):
    app = app_under(UNSHARE, "pid1", "auto", "0")
    app.event("master")
    app.event("orphan", wid=0)
    init = _first_child(app.pid)
    ns = _pid_ns(init)
    os.kill(init, signal.SIGHUP)
    assert app.event("reload_hook")["init_pid"] == "1"
    os.kill(_first_child(init), signal.SIGKILL)
    assert app.wait_exit() == 128 + signal.SIGKILL
    _wait_ns(ns, 0)


@needs_unshare
def test_pid1_a_multiprocessing_manager_made_after_creation_is_the_masters(app_under):
    """kuryr's pattern: ``multiprocessing.Manager()`` in the manager's
    ``__init__`` after ``super().__init__()``. Its server is the master's
    child, and the workers and the master share its dict."""
    app = app_under(UNSHARE, "pid1_kuryr")
    master = app.event("master")
    assert (master["pid"], master["ppid"], master["mp_server_ppid"]) == ("2", "1", "2")
    init = _first_child(app.pid)
    recorded = [app.event("recorded", wid=w) for w in (0, 1)]
    os.kill(init, signal.SIGHUP)
    assert app.event("shared")["pids"] == ",".join(r["pid"] for r in recorded)
    os.kill(init, signal.SIGTERM)
    assert app.event("run_exit")["code"] == "0"
    assert app.wait_exit() == 0, app.dump()


def test_init_true_splits_without_a_namespace_and_reaps_as_subreaper(app_under):
    app = app_under([], "pid1", "always", "5")
    master = int(app.event("master")["pid"])
    try:
        assert master != app.pid
        assert proc_stat(master)[1] == app.pid, "the master is the init's child"
        orphan = int(app.event("orphan", wid=0)["orphan"])
        deadline = time.monotonic() + DEADLINE
        while proc_stat(orphan) is not None:
            assert time.monotonic() < deadline, f"orphan {orphan} not reaped: {proc_stat(orphan)}"
            time.sleep(0.01)
        app.signal(signal.SIGHUP)
        assert app.event("reload_hook")["init_pid"] == str(app.pid)
        app.signal(signal.SIGTERM)
        assert app.event("run_exit")["code"] == "0"
        assert app.wait_exit() == 5
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master, signal.SIGKILL)


def test_init_false_and_auto_outside_pid1_do_not_split(app_under):
    for mode in ("never", "auto"):
        app = app_under([], "pid1", mode, "0")
        assert app.event("master")["pid"] == str(app.pid)
        app.event("run", wid=0)
        app.signal(signal.SIGHUP)
        assert app.event("reload_hook")["init_pid"] == "None"
        app.signal(signal.SIGTERM)
        assert app.wait_exit() == 0


def test_init_bad_values():
    r = scenario_results("init_kwargs")
    bad_env = 'COTYLEDON_INIT must be auto, always or never, not: "sometimes"'
    assert r == {
        "init_str": ["TypeError", "'init' must be a bool or None, not: 'yes' (str)"],
        "init_int": ["TypeError", "'init' must be a bool or None, not: 1 (int)"],
        "env_bad": ["ValueError", bad_env],
        "env_bad_engine": ["ValueError", bad_env],
        "valid": ["ok", "'ServiceManager'"],
    }
