"""``mp_context``: workers forked, or started in fresh interpreters
(``spawn``, ``forkserver``), always as the master's own children."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import pytest

from conftest import AGAINST_REFERENCE, APPS, pid_alive
from test_lifecycle import SM, SW

SPAWN_APP = os.path.join(APPS, "spawn_app.py")
OSLO_APP = os.path.join(APPS, "oslo_spawn_app.py")

# multiprocessing's default start method on Linux: what mp_context=None
# means, as in the reference.
DEFAULT_METHOD = "forkserver" if sys.version_info >= (3, 14) else "fork"

# mode -> the start method the manager reports.
MODES = {
    "fork": "fork",
    "spawn": "spawn",
    "spawn-name": "spawn",
    "forkserver": "forkserver",
    "default": DEFAULT_METHOD,
    # CPython 3.14's default, emulated with set_start_method().
    "default-forkserver": "forkserver",
    "default-spawn": "spawn",
}

# name, worker id of every worker of scenario "state".
WORKERS = [("probe", 0), ("probe", 1), ("restarter", 0), ("handlers", 0)]


def _fresh(method: str) -> bool:
    return method in ("spawn", "forkserver")


@pytest.mark.parametrize("mode", list(MODES))
def test_start_method_decides_what_workers_inherit(start_app, mode):
    """Module-level state set in the master is seen by forked workers only;
    a fresh interpreter imports the main module as ``__mp_main__``, gets its
    service, args (64 KiB) and hooks pickled, and runs the same worker
    protocol: new-worker hooks, SIGHUP, an announced restart, its own
    signal handlers, SIGTERM. Every worker is the master's child."""
    if mode == "spawn-name" and AGAINST_REFERENCE:
        pytest.skip("ours only: the reference takes a context, not a name")
    method = MODES[mode]
    fresh = _fresh(method)
    app = start_app("state", mode, script=SPAWN_APP)
    assert app.event("master", pid=app.pid)["method"] == method
    pids = {}
    for name, wid in WORKERS:
        run = app.event("run", name=name, wid=wid)
        pid = int(run["pid"])
        pids[name, wid] = pid
        assert run["state"] == ("imported" if fresh else "master"), run
        assert run["main"] == ("__mp_main__" if fresh else "__main__"), run
        assert run["process"].startswith(
            {"spawn": "SpawnProcess-", "forkserver": "ForkServerProcess-"}.get(method, "")
        ), run
        assert run["size"] == ("65536" if name == "probe" else "0")
        # The title, as a forked worker's (setproctitle).
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode().strip()
        assert title == f"spawn_app.py: {name} worker({wid})", title
        hook = app.event("hook", pid=pid, wid=wid)
        assert hook["state"] == run["state"]
        service = {"probe": "Probe", "restarter": "Restarter", "handlers": "Handlers"}[name]
        assert hook["service"] == service
        # The service id the master's add() returned.
        assert hook["sid"] == app.event("added", service=service)["sid"]
        if not (AGAINST_REFERENCE and method == "forkserver"):
            # The reference's forkserver workers are children of
            # multiprocessing's fork server.
            assert int(run["ppid"]) == app.pid, run

    if not AGAINST_REFERENCE:
        # No other process: no fork server, no resource tracker.
        assert sorted(app.members()) == sorted([app.pid, *pids.values()])

    # SIGHUP: the service's reload() in that worker.
    start = len(app.out.lines)
    os.kill(pids["probe", 0], signal.SIGHUP)
    app.event("reload", start=start, pid=pids["probe", 0])
    # Its own SIGUSR1 handler runs in the worker.
    os.kill(pids["handlers", 0], signal.SIGUSR1)
    assert app.event("usr1", start=start, pid=pids["handlers", 0])["state"] == (
        "imported" if fresh else "master"
    )
    if not AGAINST_REFERENCE:
        # Service.reload() restarts the worker: announced to the master
        # through the fd the worker inherited, so it is respawned although
        # its policy is restart="never".
        os.kill(pids["restarter", 0], signal.SIGHUP)
        app.event("terminate", start=start, pid=pids["restarter", 0])
        again = app.event("run", start=start, name="restarter", wid=0)
        assert int(again["pid"]) != pids["restarter", 0]
        pids["restarter", 0] = int(again["pid"])

    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    for name, wid in WORKERS:
        app.event("terminate", start=start, name=name, wid=wid, pid=pids[name, wid])
    assert app.wait_exit() == 0
    app.wait_group_gone()


@pytest.mark.ours_only(reason="the reference's spawn workers see their parent's death only by polling")
def test_spawned_workers_end_with_a_killed_master(start_app):
    """The parent-death pipe crosses the exec: a SIGKILLed master's spawn
    workers say so and end."""
    app = start_app("state", "spawn", script=SPAWN_APP)
    pids = [int(app.event("run", name=name, wid=wid)["pid"]) for name, wid in WORKERS]
    start = len(app.out.lines)
    app.signal(signal.SIGKILL)
    app.wait_exit()
    for pid in pids:
        app.out.find(
            rf"^INFO:{SW}:Parent process has died unexpectedly, \w+\(\d\) \[{pid}\] exiting$",
            start,
        )
    app.wait_group_gone()
    assert not any(pid_alive(pid) for pid in pids)


@pytest.mark.ours_only(reason="the reference fails in its supervisor thread, after run()")
@pytest.mark.parametrize(
    ("what", "named"),
    [
        ("arg", "args[0] of service 'probe' (<unlocked _thread.lock object"),
        ("kwarg", "kwargs['size'] of service 'probe' (<unlocked _thread.lock object"),
        ("service", "service 'probe' (<class '__main__.scenario_pickle.<locals>.Local'>)"),
        ("hook", "on_new_worker hook (<function scenario_pickle.<locals>.<lambda>"),
        ("run", "args[1] of service 'probe' (<unlocked _thread.lock object"),
    ],
)
def test_what_does_not_pickle_is_named(start_app, what, named):
    """With spawn, add(), register_hooks() and run() raise TypeError
    naming what does not pickle; no worker starts."""
    app = start_app("pickle", what, script=SPAWN_APP)
    assert app.wait_exit() == 3
    app.out.wait_eof()
    assert app.event("error", pid=app.pid)["type"] == "TypeError"
    line = app.out.expect(r"^ERROR: .*")
    assert named in line.string, line.string
    assert "cannot be sent to a worker started with the 'spawn' start method" in line.string
    assert not app.events("run")


def _oslo_service_available() -> bool:
    try:
        import oslo_service  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _oslo_service_available() or sys.version_info < (3, 11),
    reason="oslo.service 4.x (CPython 3.11+) not installed: tests/python/run.sh installs it on 3.11",
)
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_oslo_service_threading_backend(start_app, start_method):
    """oslo.service's threading backend with start_method="spawn": the
    workers do not inherit the master's module state, get the
    configuration (and cotyledon's oslo glue hook) pickled, and after a
    SIGHUP with a changed file the restarted workers have the new value.
    With "fork" the same program's workers do inherit the state."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "app.conf")
        with open(conf, "w") as f:
            f.write("[DEFAULT]\nlog_options = true\n[app]\ngreeting = hello\n")
        app = start_app(start_method, conf, script=OSLO_APP, env={"PYTHONWARNINGS": "ignore"})
        assert app.event("master", pid=app.pid)["method"] == start_method
        app.out.wait_count(r"^INFO:app:EV start ", 2, 0)
        starts = app.events("start")
        assert len(starts) == 2
        for e in starts:
            assert int(e["ppid"]) == app.pid
            if start_method == "spawn":
                assert e["registry"] == "empty", e
                assert e["main"] == "__mp_main__", e
            else:
                assert e["registry"] == "master_only", e
        # The glue's on_new_worker hook ran in each worker (log_options).
        app.out.wait_count(r"^DEBUG:cotyledon.oslo_config_glue:Full set of CONF:$", 3, 0)

        with open(conf, "w") as f:
            f.write("[DEFAULT]\nlog_options = true\n[app]\ngreeting = bye\n")
        start = len(app.out.lines)
        app.signal(signal.SIGHUP)
        app.out.wait_count(r"^INFO:app:EV start .*greeting=bye", 2, start)
        app.signal(signal.SIGTERM)
        assert app.wait_exit() == 0
        app.wait_group_gone()
        # The workers' reload (the glue's, then Service.reload()) went
        # through: restarts, not crashes.
        assert not app.out.all(r"Unhandled exception|exited with status [^0]"), app.out.text()
