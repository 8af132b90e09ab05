"""The master as a Python program: its threads, its signal handlers, stdio."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import pid_alive, wait_thread_in_waitpid
from test_lifecycle import SM, run_service_pid, running_workers, started_workers


def test_master_threads_keep_running_and_sigusr2(start_app):
    app = start_app("master_threads")
    workers = running_workers(app, "basic", 2)
    # The ticker thread of the master keeps ticking while it supervises...
    t0 = int(app.event("tick", pid=app.pid)["n"])
    start = len(app.out.lines)
    ticks = app.out.wait_count(r"^INFO:app:EV tick ", 5, start, timeout=5)
    assert all(f"pid={app.pid}" in m.string for m in ticks), "ticks only in the master"
    # ... including across a worker's death and respawn.
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    i, _ = app.out.find(rf"^INFO:{SM}:Child {workers[1]} killed by signal (-9|SIGKILL)$", start)
    run_service_pid(app, "basic", 1, i)
    app.out.wait_count(r"^INFO:app:EV tick ", 5, i, timeout=5)
    # Forked workers do not inherit the thread.
    assert not [e for e in app.events("tick") if e["pid"] != str(app.pid)]

    # The application's own SIGUSR2 handler runs in the master.
    start = len(app.out.lines)
    app.signal(signal.SIGUSR2)
    e = app.event("usr2", start=start, pid=app.pid, timeout=5)
    assert e["thread"] == "MainThread"
    assert app.alive()
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


# Rounds (each a new master) the foreign thread is given to take a
# worker's status from under the master.
THEFT_ROUNDS = 100


@pytest.mark.ours_only(
    reason="reference bug: multiprocessing's is_alive() never sees a child reaped by "
    "another thread's waitpid(-1), so that worker is never respawned (flaky: whoever reaps first)"
)
def test_foreign_waitpid_thread_does_not_stop_respawn(start_app):
    """An application thread blocked in os.waitpid(-1, 0) before the kill
    races the master for the worker's status (the app logs each status it
    took: EV foreign_reaped). Rounds, each a new master, go on until the
    thread took it; in every round the worker comes back, and the master
    reports the status it lost as 255."""
    for round_ in range(1, THEFT_ROUNDS + 1):
        app = start_app("master_threads", "waitpid")
        workers = running_workers(app, "basic", 2)
        wait_thread_in_waitpid(app.pid)
        start = len(app.out.lines)
        os.kill(workers[0], signal.SIGKILL)
        new_pid = run_service_pid(app, "basic", 0, start)
        assert new_pid != workers[0]
        app.event("run", start=start, wid=0, pid=new_pid)
        _, death = app.out.find(rf"^INFO:{SM}:Child {workers[0]} (.*)$", start)
        hook = app.event("dead_hook", start=start, service="basic", wid=0)
        assert pid_alive(workers[1])
        app.signal(signal.SIGTERM)
        assert app.wait_exit() == 0
        app.wait_group_gone()
        app.out.wait_eof()
        # The thread also takes the statuses of workers ending at the
        # shutdown: only the killed one counts.
        taken = len(app.events("foreign_reaped", reaped=workers[0]))
        if taken:
            assert taken == 1
            assert death.group(1) == "exited with status 255", death.string
            assert hook["code"] == "255"
            print(f"the thread took the status in round {round_}")
            return
        assert death.group(1) == "killed by signal -9", death.string
        assert hook["code"] == "-9"
    pytest.fail(f"the thread never took the status in {THEFT_ROUNDS} rounds")


def test_buffered_stdout_of_workers_is_flushed(start_app):
    app = start_app("buffered")
    workers = running_workers(app, "buffered", 2)
    # One worker ends alone (SIGTERM): what it printed reaches the pipe.
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGTERM)
    app.out.find(rf"^INFO:{SM}:Child {workers[0]} exited with status 0$", start)
    app.out.find(rf"^BUFFERED-RUN {workers[0]} 0$")
    app.out.find(rf"^BUFFERED-TERM {workers[0]} 0$")
    app.err.find(rf"^BUFFERED-ERR {workers[0]}$")
    respawned = run_service_pid(app, "buffered", 0, start)
    app.event("run", start=start, pid=respawned)
    # Then a graceful stop of everything.
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.wait_eof()
    for pid, wid in ((workers[1], 1), (respawned, 0)):
        app.out.find(rf"^BUFFERED-RUN {pid} {wid}$")
        app.out.find(rf"^BUFFERED-TERM {pid} {wid}$")
    # Workers never run the interpreter's shutdown (atexit); the master does.
    assert not app.out.all(r"^ATEXIT-WORKER ")
    assert [m.string for m in app.out.all(r"^ATEXIT-MASTER ")] == [f"ATEXIT-MASTER {app.pid}"]


def test_workers_reseed_random(start_app):
    """Each worker draws its own random numbers, not the master's sequence
    (the master seeded it with 1234 before run())."""
    app = start_app("random")
    workers = started_workers(app, "rand", 3)
    values = {wid: app.event("rand", wid=wid, pid=pid)["value"] for wid, pid in workers.items()}
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    run_pid = run_service_pid(app, "rand", 0, start)
    respawned = app.event("rand", start=start, wid=0, pid=run_pid)["value"]
    master_next = repr(random.Random(1234).random())
    drawn = [*values.values(), respawned]
    assert master_next not in drawn
    assert len(set(drawn)) == len(drawn)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_workers_are_multiprocessing_processes(start_app):
    """Each worker, respawns included, is numbered as ``multiprocessing``
    numbers the processes it starts, has the master as its
    ``parent_process()``, and does not repeat what the master had printed
    without flushing before it forked."""
    app = start_app("mp_identity")
    workers = started_workers(app, "mpid", 2)
    seen = {wid: app.event("mp", wid=wid, pid=pid) for wid, pid in workers.items()}
    assert sorted(e["name"] for e in seen.values()) == ["ForkProcess-1", "ForkProcess-2"]
    assert {e["parent"] for e in seen.values()} == {str(app.pid)}
    # The rest of what multiprocessing says of a process it started: its
    # own pid, the master's authentication key, not a daemon, alive; the
    # callbacks the master registered with register_after_fork ran.
    master = app.event("mp_master", pid=app.pid)
    for e in seen.values():
        assert e["ident"] == e["pid"], e
        assert (e["authkey"], e["daemon"], e["alive"]) == (master["authkey"], "False", "True"), e
        assert e["after_fork"] == "True", e
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    run_pid = run_service_pid(app, "mpid", 0, start)
    respawned = app.event("mp", start=start, wid=0, pid=run_pid)
    assert respawned["name"] == "ForkProcess-3"
    assert respawned["parent"] == str(app.pid)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.wait_eof()
    assert len(app.out.all(rf"^MASTER-UNFLUSHED {app.pid}$")) == 1


def test_master_stdout_replaced_during_run_is_flushed_before_a_fork(start_app):
    """The master's new sys.stdout (set in a hook during run()) is the one
    flushed before the next fork: the respawned worker does not repeat the
    line it held."""
    app = start_app("stdout_swap")
    workers = started_workers(app, "mpid", 1)
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    run_pid = run_service_pid(app, "mpid", 0, start)
    app.event("mp", start=start, wid=0, pid=run_pid)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.wait_eof()
    assert len(app.out.all(rf"^MASTER-SWAPPED {app.pid}$")) == 1


def test_worker_can_take_sighup_over(start_app):
    """A worker that installs its own SIGHUP handler gets each SIGHUP sent
    to it in that handler, on its main thread, instead of reload()."""
    app = start_app("worker_own_hup")
    pid = running_workers(app, "ownhup", 1)[0]
    for _ in range(2):
        start = len(app.out.lines)
        os.kill(pid, signal.SIGHUP)
        e = app.event("own_hup", start=start, pid=pid, timeout=5)
        assert e["main"] == "True"
    assert app.events("reload") == []
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_application_signal_handlers_run_in_workers(start_app):
    """A worker's own Python signal handlers run (on its main thread) next
    to the engine's SIGHUP handling; SystemExit in one ends the worker."""
    app = start_app("worker_handlers")
    workers = running_workers(app, "handlers", 2)
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGUSR1)
    e = app.event("usr1", start=start, pid=workers[0], timeout=5)
    assert e["main"] == "True"
    # The engine's own signals still reach reload() after it.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    for wid, pid in workers.items():
        app.event("reload", start=start, wid=wid, pid=pid, timeout=5)
    # SystemExit(7) raised in a handler ends that worker with status 7.
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGUSR2)
    app.out.find(rf"^INFO:{SM}:Child {workers[1]} exited with status 7$", start)
    assert pid_alive(workers[0])
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


# The standard modules the package itself imports when it is imported:
# what they pull in differs between CPython versions (3.9's platform, which
# uuid imports, imports subprocess), so only what the package adds counts.
PACKAGE_STDLIB = (
    "_thread collections contextlib functools importlib io itertools logging math "
    "multiprocessing multiprocessing.process os pickle re select signal sys threading "
    "time traceback typing uuid"
)


def test_importing_cotyledon_leaves_out_modules_the_master_does_not_need():
    """Every module the master imports is copied again (page tables) at
    each fork: json and multiprocessing.util (with subprocess) are imported
    only where they are used."""
    code = (
        "import importlib, sys\n"
        f"for m in {PACKAGE_STDLIB.split()!r}: importlib.import_module(m)\n"
        "before = set(sys.modules)\n"
        "import cotyledon\n"
        "print(*sorted(set(sys.modules) - before))\n"
    )
    added = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert "cotyledon._forking" in added
    for name in ("json", "multiprocessing.util", "subprocess"):
        assert name not in added, f"import cotyledon imports {name}"
