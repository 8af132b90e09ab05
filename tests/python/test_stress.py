"""Fault injection through the Python face: fork safety with busy threads,
and a signal storm with the application's own handler."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Optional

import pytest

from conftest import APPS, proc_stat

STRESS = os.path.join(APPS, "stress.py")
FORKS = int(os.environ.get("COTYLEDON_STRESS_FORKS", "1000"))


@pytest.mark.ours_only(reason="the reference forks through multiprocessing and can hang here")
def test_forks_under_busy_threads_never_deadlock(start_app):
    app = start_app("forkstorm", script=STRESS)
    # Every fork must reach run() and log; a child that inherited a held
    # stream or logging lock would stall the count.
    app.out.wait_count(r"INFO:app:EV run ", FORKS, timeout=240)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.wait_eof()
    print(f"fork storm: {len(app.out.all(r'INFO:app:EV run '))} forks under 3 busy threads")


def _children(pid: int) -> list[int]:
    """The children of process pid (zombies included), from /proc."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return kids


def _kill_a_live_worker(master: int, rng: random.Random, killed: set[int]) -> Optional[int]:
    """SIGKILL a live worker of master, chosen at random among its children
    not SIGKILLed already (one may look alive a little longer while it
    exits; nobody else kills them); returns its pid, or None when there is
    none.

    Through a pidfd: once it is open, and the process at that pid is still
    a live child of the master, the signal can only reach that worker, even
    if it dies and its pid is reused meanwhile."""
    kids = [pid for pid in _children(master) if pid not in killed]
    rng.shuffle(kids)
    for pid in kids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            st = proc_stat(pid)
            if st is None or st[0] == "Z" or st[1] != master:
                continue
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            return pid
        except ProcessLookupError:
            continue
        finally:
            os.close(fd)
    return None


def test_signal_storm_loses_nothing(start_app, tmp_path):
    marker = tmp_path / "generation"
    marker.write_text("0")
    app = start_app("storm", str(marker), script=STRESS)
    app.out.wait_count(r"INFO:app:EV run wid=(\d+) pid=(\d+)", 8)
    rng = random.Random(7)
    sent = {"SIGHUP": 0, "SIGKILL": 0, "SIGUSR2": 0}
    no_target = 0
    # The workers SIGKILL was sent to, each while it was alive.
    killed: set[int] = set()
    for _ in range(10_000):
        kind = rng.choice(list(sent))
        if kind == "SIGKILL":
            pid = _kill_a_live_worker(app.pid, rng, killed)
            if pid is None:
                no_target += 1
                continue
            killed.add(pid)
        else:
            os.kill(app.pid, getattr(signal, kind))
        sent[kind] += 1
    start = len(app.out.lines)
    marker.write_text("final")
    os.kill(app.pid, signal.SIGHUP)
    # Every worker id sees the final generation: by reload, or by starting
    # after it.
    seen = set()
    deadline = time.monotonic() + 60
    i = start
    while len(seen) < 8:
        i, m = app.out.find(r"INFO:app:EV (reload|init) wid=(\d+) gen=(\S+)", i,
                            timeout=max(0.1, deadline - time.monotonic()))
        i += 1
        if m.group(3) == "final":
            seen.add(int(m.group(2)))
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    m = app.out.expect(r"INFO:app:EV usr2 count=(\d+)")
    assert int(m.group(1)) >= 1, "the application's own SIGUSR2 handler ran"
    app.out.wait_eof()
    # A SIGKILL reached its target when the master saw that worker die of
    # it: every one sent did, and none other was seen. (The master logs a
    # death before it forks that id again, and every id ran again since:
    # the final generation's lines came from workers never killed.)
    died = {
        int(d.group(1))
        for d in app.out.all(r"^INFO:cotyledon._service_manager:Child (\d+) killed by signal -9$")
    }
    assert killed, "no worker was SIGKILLed"
    assert died == killed, (
        f"sent but not seen dying: {sorted(killed - died)}; "
        f"seen dying but not sent: {sorted(died - killed)}"
    )
    print(
        f"signal storm: SIGHUP {sent['SIGHUP']}, worker SIGKILL {len(died)} (each reached a live "
        f"worker, seen dead by the master; {no_target} turns found every worker already killed), "
        f"SIGUSR2 {sent['SIGUSR2']}; "
        f"app's SIGUSR2 handler ran {m.group(1)} times; last SIGHUP reached all 8 workers"
    )
