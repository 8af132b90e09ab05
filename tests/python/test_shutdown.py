"""Nothing outlives the master: workers that ignore SIGTERM and SIGINT (one
of them stopped) and the processes they started are SIGKILLed
``kill_grace`` after the fast exit's SIGINT; a worker whose master was
SIGKILLed ends what it started."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import pid_alive, proc_stat, wait_pids_gone
from test_lifecycle import SM, SW, running_workers, started_workers

pytestmark = pytest.mark.ours_only(
    reason="the reference has no kill_grace, sends no SIGKILL and leaves what workers started"
)


def stubborn_children(app, event: str, pid: int, strays: list[int]) -> tuple[int, int]:
    """The two children app.py's worker `pid` started (``child``, in the
    app's group, and ``escaped``, in a session of its own)."""
    e = app.event(event, pid=pid)
    kids = int(e["child"]), int(e["escaped"])
    strays.extend(kids)
    return kids


def wait_stopped(pid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while (proc_stat(pid) or ("?",))[0] != "T":
        assert time.monotonic() < deadline, f"{pid} not stopped: {proc_stat(pid)}"
        time.sleep(0.01)


def test_wedged_workers_are_killed(start_app, strays):
    """graceful_shutdown_timeout=1, kill_grace=0.3; both workers ignore
    SIGTERM and SIGINT (terminate() would hang), worker 1 is SIGSTOPped:
    after SIGTERM the master gives up, SIGINTs, then SIGKILLs the workers,
    what they started and its group, and exits 1 once they are gone."""
    app = start_app("wedged")
    workers = started_workers(app, "wedged", 2)
    kids = {wid: stubborn_children(app, "wedged", pid, strays) for wid, pid in workers.items()}
    os.kill(workers[1], signal.SIGSTOP)
    wait_stopped(workers[1])
    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 1
    # the master waited for its workers and its group before exiting
    for wid, pid in workers.items():
        assert not pid_alive(pid), f"worker {wid} alive after the master exited"
        assert not pid_alive(kids[wid][0]), f"child of worker {wid} alive after the master exited"
    # the children out of the group were SIGKILLed too
    wait_pids_gone([escaped for _, escaped in kids.values()], 5)
    i, _ = app.out.find(
        rf"^INFO:{SM}:Graceful shutdown timeout exceeded, instantaneous exiting of master process$",
        start,
    )
    pids = ", ".join(str(p) for p in sorted(workers.values()))
    app.out.find(
        rf"^INFO:{SM}:Still alive 300 ms after SIGINT, killing with SIGKILL: "
        rf"workers {pids} and the rest of the process group$",
        i,
    )
    assert not app.events("terminate"), "a worker did not ignore SIGTERM"
    app.wait_group_gone(2)


def test_master_sigkill_ends_what_workers_started(start_app, strays):
    app = start_app("stubborn_grandchildren")
    (pid,) = running_workers(app, "parent", 1).values()
    kids = stubborn_children(app, "grandchildren", pid, strays)
    start = len(app.out.lines)
    app.signal(signal.SIGKILL)
    assert app.wait_exit() == -9
    app.out.find(
        rf"^INFO:{SW}:Parent process has died unexpectedly, parent\(0\) \[{pid}\] exiting$",
        start,
    )
    wait_pids_gone([pid, *kids], 5)
