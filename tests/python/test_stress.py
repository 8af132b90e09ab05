"""Fault injection through the Python face: fork safety with busy threads,
and a signal storm with the application's own handler."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from conftest import APPS

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


def test_signal_storm_loses_nothing(start_app, tmp_path):
    marker = tmp_path / "generation"
    marker.write_text("0")
    app = start_app("storm", str(marker), script=STRESS)
    runs = app.out.wait_count(r"INFO:app:EV run wid=(\d+) pid=(\d+)", 8)
    pids = {int(m.group(1)): int(m.group(2)) for m in runs}
    rng = random.Random(7)
    sent = {"SIGHUP": 0, "SIGKILL": 0, "SIGUSR2": 0}
    for _ in range(10_000):
        kind = rng.choice(list(sent))
        try:
            if kind == "SIGKILL":
                os.kill(pids[rng.randrange(8)], signal.SIGKILL)
            else:
                os.kill(app.pid, getattr(signal, kind))
            sent[kind] += 1
        except ProcessLookupError:
            pass
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
    print(f"signal storm: {sent}, app's SIGUSR2 handler ran {m.group(1)} times")
