"""The seed's quickstart (examples/quickstart.py): start, SIGHUP, SIGTERM."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import REPO, wait_pids_gone

QUICKSTART = os.path.join(REPO, "examples", "quickstart.py")

W = r"^\S+ \S+ - (?P<mpid>\d+) - INFO - \[(?P<pid>\d+)\] my_example_service worker (?P<wid>\d) "


def test_quickstart(start_app):
    if not os.path.exists(QUICKSTART):
        pytest.fail(f"{QUICKSTART} is missing")
    app = start_app(script=QUICKSTART)
    log = app.err  # logging.basicConfig() writes to stderr
    log.find(r" - INFO - Starting Cotyledon Service Manager$")
    inits = log.wait_count(W + r"init$", 2)
    runs = log.wait_count(W + r"running\.\.\.$", 2)
    workers = {int(m["wid"]): int(m["pid"]) for m in runs}
    assert sorted(workers) == [0, 1]
    assert {int(m["wid"]): int(m["pid"]) for m in inits} == workers
    assert all(int(m["mpid"]) == int(m["pid"]) for m in runs)
    assert app.pid not in workers.values()

    start = len(log.lines)
    app.signal(signal.SIGHUP)
    reloads = log.wait_count(W + r"reloading\.\.\.$", 2, start)
    assert {int(m["wid"]): int(m["pid"]) for m in reloads} == workers

    start = len(log.lines)
    app.signal(signal.SIGTERM)
    terms = log.wait_count(W + r"terminating\.\.\.$", 2, start)
    assert {int(m["wid"]): int(m["pid"]) for m in terms} == workers
    assert app.wait_exit(10) == 0
    wait_pids_gone(workers.values(), 2)
    app.wait_group_gone(2)
    assert "Traceback" not in log.text()
    # run() ends with SystemExit(0): the line after it never runs.
    assert "Cotyledon Service Manager stopped." not in log.text()
