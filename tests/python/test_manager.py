"""ServiceManager API: subclassing, reconfigure, hooks, shutdown(), bad input."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import pid_alive, scenario_results, wait_pids_gone
from test_lifecycle import SM, SW, run_service_pid, running_workers, started_workers


def test_subclassed_manager_reconfigure_from_reload_hook(start_app):
    app = start_app("subclass")
    app.event("mymanager_run", pid=app.pid)
    workers = started_workers(app, "basic", 2)
    assert sorted(workers) == [0, 1]

    # First SIGHUP: the hook reconfigures to 4; workers 2 and 3 appear.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.event("reconfigure", start=start, workers=4)
    ms = app.out.wait_count(rf"^DEBUG:{SW}:Run service basic\((\d+)\) \[(\d+)\]$", 4, start)
    ids = sorted(int(m.group(1)) for m in ms)
    # 0 and 1 restart (Basic has no reload()), 2 and 3 are new.
    assert ids == [0, 1, 2, 3]
    current = {}
    for m in app.out.all(rf"^DEBUG:{SW}:Run service basic\((\d+)\) \[(\d+)\]$"):
        current[int(m.group(1))] = int(m.group(2))
    for wid in range(4):
        app.event("run", wid=wid, pid=current[wid])

    # Second SIGHUP: down to 1; workers >= 1 get SIGTERM, 0 stays.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.event("reconfigure", start=start, workers=1)
    for wid in (1, 2, 3):
        app.out.find(
            rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service basic\({wid}\) ",
            start,
        )
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def worker_titles(app) -> list[str]:
    titles = []
    for pid in app.members():
        if pid != app.pid:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    titles.append(f.read().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
    return sorted(titles)


@pytest.mark.ours_only(
    reason="reference bug: the workers it stops on a scale-down are respawned with "
    "their old ids, it converges only through rate-limiter sleeps, not within the deadline"
)
def test_reconfigure_down_settles_on_remaining_ids(start_app):
    app = start_app("subclass")
    started_workers(app, "basic", 2)
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.out.wait_count(rf"^DEBUG:{SW}:Run service basic\((\d+)\) \[(\d+)\]$", 4, start)
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.event("reconfigure", start=start, workers=1)
    # Settles on exactly worker 0, and stays so for a second.
    deadline = time.monotonic() + 15
    stable_since = None
    while True:
        titles = worker_titles(app)
        if titles == ["app.py: basic worker(0)"]:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since > 1.0:
                break
        else:
            stable_since = None
        assert time.monotonic() < deadline, f"workers alive: {titles}"
        time.sleep(0.05)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_hook_exceptions_are_logged_and_manager_keeps_running(start_app):
    app = start_app("hook_errors")
    (pid,) = started_workers(app, "withreload", 1).values()
    # new_worker hooks run in the worker: logged, next hook skipped, worker runs.
    app.out.find(r"^ERROR:cotyledon\.[\w.]+:Exception raised during new_worker hooks$")
    app.event("run", pid=pid)
    assert not app.events("new_worker_hook2")

    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.out.find(r"^ERROR:cotyledon\.[\w.]+:Exception raised during reload hooks$", start)
    app.err.text()  # tracebacks go to the log, on stdout
    app.out.find(r"^ValueError: hook boom$", start)
    app.event("reload", start=start, pid=pid)  # workers still get SIGHUP
    assert not app.events("reload_hook2")

    start = len(app.out.lines)
    os.kill(pid, signal.SIGKILL)
    app.out.find(r"^ERROR:cotyledon\.[\w.]+:Exception raised during dead_worker hooks$", start)
    i, _ = app.out.find(rf"^INFO:{SM}:Child {pid} killed by signal (-9|SIGKILL)$", start)
    new_pid = run_service_pid(app, "withreload", 0, i)
    assert not app.events("dead_worker_hook2")
    assert app.alive()

    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.find(r"^ERROR:cotyledon\.[\w.]+:Exception raised during terminate hooks$", start)
    app.out.find(rf"^DEBUG:{SM}:Shutdown finish$", start)
    assert not app.events("terminate_hook2")
    wait_pids_gone([new_pid], 2)
    app.wait_group_gone()


def test_shutdown_from_dead_worker_hook(start_app):
    app = start_app("shutdown_hook")
    (special,) = started_workers(app, "other", 1).values()
    workers = running_workers(app, "basic", 2)
    start = len(app.out.lines)
    os.kill(special, signal.SIGKILL)
    assert app.wait_exit() == 0
    app.event("dead_hook", start=start, special=True, code=-9)
    i = app.out.index(rf"^INFO:{SM}:Manager shutdown requested$", start)
    j = app.out.index(
        rf"^INFO:{SM}:Caught SIGTERM signal, graceful exiting of master process$", start
    )
    k = app.out.index(rf"^DEBUG:{SM}:Shutdown finish$", start)
    assert i < j < k
    run_exit = app.event("run_exit", start=start)
    assert run_exit["type"] == "SystemExit" and run_exit["code"] == "0"
    # shutdown() again after run() ended is harmless.
    app.event("second_shutdown_returned", start=start)
    for wid, p in workers.items():
        app.out.index(
            rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service basic\({wid}\) \[{p}\]$",
            start,
        )
    wait_pids_gone(workers.values(), 2)
    app.wait_group_gone()


def test_dead_worker_hook_registered_while_running(start_app):
    app = start_app("late_hook")
    workers = running_workers(app, "withreload", 4)
    # No hook yet: a death is only logged.
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    app.out.find(rf"^INFO:{SM}:Child {workers[0]} killed by signal -9$", start)
    workers[0] = run_service_pid(app, "withreload", 0, start)
    assert not app.events("dead_hook")
    # Registered from an on_reload hook, in the running master.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.event("hook_registered", start=start, pid=app.pid)
    for p in workers.values():
        app.event("reload", start=start, pid=p)
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    app.event("dead_hook", start=start, pid=app.pid, wid=1, code=-9)
    run_service_pid(app, "withreload", 1, start)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_shutdown_from_another_thread_and_again_after_run(start_app, tmp_path):
    trigger = tmp_path / "trigger"
    app = start_app("shutdown_thread", trigger)
    workers = running_workers(app, "basic", 2)
    start = len(app.out.lines)
    trigger.write_text("go")
    assert app.wait_exit() == 0
    app.event("thread_shutdown", start=start)
    app.out.index(rf"^INFO:{SM}:Manager shutdown requested$", start)
    app.out.index(rf"^DEBUG:{SM}:Shutdown finish$", start)
    run_exit = app.event("run_exit", start=start)
    assert run_exit["type"] == "SystemExit" and run_exit["code"] == "0"
    app.event("second_shutdown_returned", start=start)
    assert not app.events("run_returned")
    for wid in workers:
        app.event("terminate", start=start, wid=wid)
    wait_pids_gone(workers.values(), 2)
    app.wait_group_gone()


def test_bad_input_messages():
    r = scenario_results("bad_input")
    w = "'workers' must be an int >= 1, not: "
    expected = {
        "add_str": ["TypeError", "'service' must be a callable"],
        "add_workers_0": ["ValueError", w + "0 (int)"],
        "add_workers_str": ["ValueError", w + "2 (str)"],
        "add_workers_none": ["ValueError", w + "None (NoneType)"],
        "add_workers_neg": ["ValueError", w + "-2 (int)"],
        "add_workers_float": ["ValueError", w + "1.5 (float)"],
        "sid_type": "UUID",
        "reconf_unknown": [
            "ValueError",
            "12345678-1234-5678-1234-567812345678 service id doesn't exists",
        ],
        "reconf_str": ["ValueError", "notexists service id doesn't exists"],
        "reconf_low": ["ValueError", "'workers' must be an int >= -2, not: -5 (int)"],
        "reconf_min": ["ok", "None"],
        "reconf_ok": ["ok", "None"],
        "second_manager": [
            "RuntimeError",
            "Only one instance of ServiceManager per application is allowed",
        ],
        "hook_on_terminate": ["TypeError", "'on_terminate' must be a callable"],
        "hook_on_reload": ["TypeError", "'on_reload' must be a callable"],
        "hook_on_new_worker": ["TypeError", "'on_new_worker' must be a callable"],
        "hook_on_dead_worker": ["TypeError", "'on_dead_worker' must be a callable"],
        "hooks_none": ["ok", "None"],
        "thread_adds": [160, 160],
        "default_name": "Unnamed",
        "named": "basic",
        "default_gst": "None",
        "mp_context_start_method": "fork",
        "mp_context_default": True,
        "mp_context_assign": True,
        "types": ["ServiceId", "WorkerId"],
        "py_typed": True,
        "after_reset": ["ok", "'ServiceManager'"],
    }
    assert r == expected


def test_manager_calls_in_a_worker_act_on_its_copy(start_app, tmp_path):
    """As under Cotyledon: reconfigure() in a worker succeeds and changes
    nothing in the master; shutdown() in a worker stops that worker, which
    is respawned."""
    app = start_app("worker_calls", str(tmp_path / "marker"))
    ((_, first),) = running_workers(app, "worker_calls", 1).items()
    # (Lines from the start: they may all be in before the wait above ends.)
    app.event("worker_reconfigure", pid=first, result="ok")
    app.event("worker_shutdown", pid=first)
    app.out.find(rf"^INFO:{SM}:Manager shutdown requested$")
    app.out.find(
        rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service "
        rf"worker_calls\(0\) \[{first}\]$"
    )
    app.event("terminate", pid=first, wid=0)
    exited, _ = app.out.find(rf"^INFO:{SM}:Child {first} exited with status 0$")
    second = run_service_pid(app, "worker_calls", 0, exited)
    assert second != first
    app.event("run", pid=second)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    # Still one worker: the worker's reconfigure(3) did not reach the
    # master, nor did its shutdown().
    assert not app.events("init", wid=1) and not app.events("init", wid=2)
    stops = app.out.all(rf"^INFO:{SM}:Caught SIGTERM signal, graceful exiting of master process$")
    assert len(stops) == 1
