"""The records of the ``cotyledon.*`` loggers, not only their text: each
line of the contract has Cotyledon 2.2.0's template in ``msg``, its
``args``, and its ``module``, ``funcName`` and ``filename``, so that
``%(funcName)s`` prints what it prints under the reference, and filters
and error trackers that group by template see one per line (issue #15,
section 3). The app writes every record as ``REC <json>``."""

from __future__ import annotations

import json
import os
import signal

import pytest


SM = "cotyledon._service_manager"
SW = "cotyledon._service_worker"
UT = "cotyledon._utils"

# template: (logger, level, args shape, module, funcName), as the
# reference's records have them.
EXPECTED = {
    "Child %(pid)d exited with status %(code)d": (SM, "INFO", ("pid", "code"), "_service_manager", "_get_last_worker_died"),
    "Child %(pid)d killed by signal %(sig)s": (SM, "INFO", ("pid", "sig"), "_service_manager", "_get_last_worker_died"),
    "Manager shutdown requested": (SM, "INFO", 0, "_service_manager", "shutdown"),
    "Caught SIGTERM signal, graceful exiting of master process": (SM, "INFO", 0, "_service_manager", "_shutdown"),
    "Killing services with signal SIGTERM": (SM, "DEBUG", 0, "_service_manager", "_shutdown"),
    "Waiting services to terminate": (SM, "DEBUG", 0, "_service_manager", "_shutdown"),
    "Shutdown finish": (SM, "DEBUG", 0, "_service_manager", "_shutdown"),
    "Caught SIGINT signal, instantaneous exiting": (SM, "INFO", 0, "_service_manager", "_fast_exit"),
    "Graceful shutdown timeout exceeded, instantaneous exiting of master process": (SM, "INFO", 0, "_service_manager", "_fast_exit"),
    "Forking too fast, sleeping": (SM, "INFO", 0, "_service_manager", "_slowdown_respawn_if_needed"),
    "Run service %s": (SW, "DEBUG", 1, "_service_worker", "wait_forever"),
    "Caught SIGTERM signal, graceful exiting of service %s": (SW, "INFO", 1, "_service_worker", "_on_signal_received"),
    "Graceful shutdown timeout (%d) exceeded, exiting %s now.": (SW, "INFO", 2, "_service_worker", "_alarm"),
    "Caught SIGINT signal, instantaneous exiting of service %s": (SW, "INFO", 1, "_service_worker", "_fast_exit"),
    "Parent process has died unexpectedly, %s exiting": (SW, "INFO", 1, "_service_worker", "_watch_parent_process"),
    "Exception raised during %s hooks": (UT, "ERROR", 1, "_utils", "run_hooks"),
    "Unhandled exception": (UT, "ERROR", 0, "_utils", "exit_on_exception"),
}


def records(app) -> list[dict]:
    with app.out._cond:
        lines = list(app.out.lines)
    return [json.loads(line[4:]) for line in lines if line.startswith("REC ")]


def live_workers(app) -> dict[int, int]:
    """Worker id -> pid, once all 3 run. Worker 1 exits 42 once, worker 2
    crashes once: both are respawned (their first instances never reach
    the 'run' event)."""
    app.out.find(r"^REC .*exited with status 42", timeout=20)
    app.out.find(r"^REC .*Unhandled exception", timeout=20)
    return {wid: int(app.event("run", wid=wid, timeout=20)["pid"]) for wid in range(3)}


def check(recs: list[dict], want: set[str]) -> None:
    """Every record is one of the contract's, as the reference makes it;
    every template of ``want`` was seen."""
    seen = set()
    for rec in recs:
        assert rec["msg"] in EXPECTED, rec
        logger, level, shape, module, func = EXPECTED[rec["msg"]]
        assert (rec["name"], rec["levelname"], rec["module"], rec["funcName"]) == (
            logger, level, module, func), rec
        assert rec["filename"] == module + ".py", rec
        assert isinstance(rec["lineno"], int) and rec["lineno"] > 0, rec
        if isinstance(shape, tuple):
            assert isinstance(rec["args"], dict) and tuple(rec["args"]) == shape, rec
            assert isinstance(rec["args"]["pid"], int), rec
        else:
            assert isinstance(rec["args"], list) and len(rec["args"]) == shape, rec
        assert rec["exc"] == (rec["msg"] in ("Exception raised during %s hooks", "Unhandled exception")), rec
        seen.add(rec["msg"])
    assert want <= seen, want - seen


def test_records_of_a_life(start_app, tmp_path):
    markers = str(tmp_path / "m")
    app = start_app("records", markers)
    workers = live_workers(app)
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    app.out.find(rf"^REC .*Child {workers[0]} killed by signal -9", start)
    # Once worker 0 runs again (maybe after the limiter's wait), SIGHUP.
    app.event("run", start=start, wid=0, timeout=20)
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)  # a failing hook; the workers restart
    app.out.find(r"^REC .*Exception raised during %s hooks", start)
    app.out.find(r"^REC .*Graceful shutdown timeout \(%d\)", start, timeout=20)
    start = len(app.out.lines)
    open(markers + ".stop", "w").close()  # noqa: SIM115
    assert app.wait_exit(30) == 0
    app.wait_group_gone()
    app.out.wait_eof()
    recs = records(app)
    check(recs, {
        "Child %(pid)d exited with status %(code)d",
        "Child %(pid)d killed by signal %(sig)s",
        "Manager shutdown requested",
        "Caught SIGTERM signal, graceful exiting of master process",
        "Killing services with signal SIGTERM",
        "Waiting services to terminate",
        "Shutdown finish",
        "Run service %s",
        "Caught SIGTERM signal, graceful exiting of service %s",
        "Graceful shutdown timeout (%d) exceeded, exiting %s now.",
        "Exception raised during %s hooks",
        "Unhandled exception",
    })
    killed = [r for r in recs if r["msg"].startswith("Child %(pid)d killed")]
    assert killed[0]["args"] == {"pid": workers[0], "sig": "-9"}
    exited = [r for r in recs if r["msg"].startswith("Child %(pid)d exited")]
    assert {"code": 42} .items() <= exited[0]["args"].items() or any(
        r["args"]["code"] == 42 for r in exited)
    # The text is the reference's too.
    assert killed[0]["message"] == f"Child {workers[0]} killed by signal -9"


def test_records_of_sigint_and_parent_death(start_app, tmp_path):
    app = start_app("records", str(tmp_path / "a"))
    live_workers(app)
    app.signal(signal.SIGINT)
    assert app.wait_exit() == 1
    app.wait_group_gone()
    app.out.wait_eof()
    check(records(app), {
        "Caught SIGINT signal, instantaneous exiting",
        "Caught SIGINT signal, instantaneous exiting of service %s",
    })

    app = start_app("records", str(tmp_path / "b"))
    live_workers(app)
    app.signal(signal.SIGKILL)
    app.wait_exit()
    app.wait_group_gone(20)
    app.out.wait_eof()
    check(records(app), {"Parent process has died unexpectedly, %s exiting"})


@pytest.mark.ours_only(
    reason="the reference's master graceful timeout never fires while its shutdown "
    "waits for a hung worker (see test_master_graceful_timeout)"
)
def test_records_of_the_master_timeout(start_app, tmp_path):
    app = start_app("records", str(tmp_path / "m"), "master_timeout")
    live_workers(app)
    app.signal(signal.SIGTERM)
    assert app.wait_exit(20) == 1
    app.wait_group_gone()
    app.out.wait_eof()
    check(records(app), {
        "Graceful shutdown timeout exceeded, instantaneous exiting of master process",
    })


def test_worker_records_follow_levels_set_in_the_worker(start_app):
    """The engine's worker lines follow the logger's level as the worker
    sets it: the master's run() started with the worker logger at INFO,
    worker 0 set it to DEBUG in its __init__ and logs "Run service",
    worker 1 did not and logs nothing at DEBUG."""
    app = start_app("late_debug")
    runs = {w: app.event("run", name="late", wid=w) for w in (0, 1)}
    # "Run service" is logged before run() is called, on the same stream.
    lines = app.out.all(rf"^DEBUG:{SW}:Run service late\((\d+)\) \[(\d+)\]$")
    assert [(m[1], m[2]) for m in lines] == [("0", runs[0]["pid"])], app.out.text()
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
