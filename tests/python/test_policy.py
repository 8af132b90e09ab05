"""Restart policies in the Python face: ``ServiceManager.add(...,
restart=, stop_on_exit=, backoff=, give_up=)``, what ``run()`` raises when
a policy stops the manager, what ``status()`` shows, and the checks of the
arguments."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import DEADLINE, scenario_results
from test_lifecycle import SM, run_service_pid, running_workers

pytestmark = pytest.mark.ours_only(reason="restart policies are not in the reference")

CTL = [sys.executable, "-m", "cotyledon", "ctl"]


def status_from_hook(app, start: int = 0) -> dict:
    """SIGHUP; the status the reload hook logged (``STATUS hook <json>``)."""
    app.signal(signal.SIGHUP)
    _, m = app.out.find(r"^STATUS hook (.*)$", start)
    return json.loads(m.group(1))


def test_on_failure_finishes_a_clean_exit_and_respawns_a_failure(start_app):
    app = start_app("policy", "on_failure", "0,3")
    app.out.find(rf"^INFO:{SM}:Worker 0 of service policy finished \(restart policy on-failure\)$")
    # Worker 1 fails: it comes back (its backoff is 20 ms).
    app.out.wait_count(r"^INFO:app:EV init .*wid=1 ", 2)
    status = status_from_hook(app)
    service = status["services"][0]
    assert service["policy"]["restart"] == "on-failure"
    assert service["policy"]["backoff"]["base"] == 0.02
    w0, w1 = service["worker_list"]
    assert w0["finished"] is True and w0["pid"] is None, w0
    assert w0["last_exit"] == {"kind": "exit", "code": 0, "signal": None, "name": None}
    assert w1["finished"] is False and w1["failures"] >= 1, w1
    assert service["counters"]["failures"] >= 1
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    assert len(app.events("init", wid=0)) == 1, "worker 0 started once"


def test_stop_on_exit_raises_system_exit_with_the_last_failure(start_app):
    app = start_app("policy", "stop_on_exit", "7,0")
    app.out.find(
        rf"^ERROR:{SM}:Service policy has no worker left \(stop on exit\): "
        r"stopping the manager with exit status 7$"
    )
    app.event("run_exit", type="SystemExit", code=7)
    assert app.wait_exit() == 7
    assert len(app.events("init")) == 2, "no worker respawned"


def test_give_up_raises_system_exit_125(start_app):
    app = start_app("policy", "give_up", "5")
    app.out.find(
        rf"^ERROR:{SM}:Service policy gave up: 3 failures within 60s: "
        r"stopping the manager with exit status 125$"
    )
    app.event("run_exit", type="SystemExit", code=125)
    assert app.wait_exit() == 125
    assert len(app.events("init", wid=0)) == 3


def test_backoff_waits_double_up_to_their_max(start_app):
    app = start_app("policy", "backoff", "1")
    for wait in ("0.050", "0.100", "0.200", "0.200"):
        app.out.expect(
            rf"^INFO:{SM}:Worker 0 of service policy restarting in {wait}s \(backoff\)$"
        )
    assert not app.out.all("Forking too fast"), "the limiter does not govern it"
    status = status_from_hook(app)
    assert status["services"][0]["counters"]["backoff_waits"] >= 4
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0


@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="coty-pol-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_default_reload_and_ctl_restart_do_not_count_under_never(start_app, sockdir):
    """restart="never" with stop_on_exit: the default reload() restarts its
    worker (announced), cotyledon-ctl restart restarts one (the master's
    SIGTERM); neither finishes it nor stops the manager."""
    sock = os.path.join(sockdir, "ctl.sock")
    app = start_app("policy", "restarting", "-", sock)
    first = running_workers(app, "policy", 1)[0]
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    app.out.find(rf"^INFO:{SM}:Child {first} exited with status 0$", start)
    second = run_service_pid(app, "policy", 0, start)
    assert second != first
    app.event("run", pid=second)
    start = len(app.out.lines)
    done = subprocess.run(
        [*CTL, "--socket", sock, "restart", "policy", "0"],
        capture_output=True, text=True, timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    app.out.find(rf"^INFO:{SM}:Child {second} exited with status 0$", start)
    third = run_service_pid(app, "policy", 0, start)
    assert third not in (first, second)
    assert not app.out.all("finished \\(restart policy"), app.dump()
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0


def test_bad_policy_arguments_are_clear_errors():
    r = scenario_results("policy_kwargs")
    allowed = '\'restart\' must be "always", "on-failure" or "never", not: '
    assert r["restart_bad"] == ["ValueError", allowed + "'sometimes'"]
    assert r["restart_case"] == ["ValueError", allowed + "'Always'"]
    assert r["restart_int"] == ["TypeError", allowed + "1 (int)"]
    assert r["restart_none"] == ["TypeError", allowed + "None (NoneType)"]
    assert r["restart_positional"][0] == "TypeError"
    assert r["stop_on_exit_int"] == ["TypeError", "'stop_on_exit' must be a bool, not: 1 (int)"]
    assert r["stop_on_exit_none"][0] == "TypeError"
    assert r["backoff_tuple"] == [
        "TypeError", "'backoff' must be a cotyledon.Backoff or None, not: (1, 2) (tuple)"
    ]
    assert r["give_up_int"] == [
        "TypeError", "'give_up' must be a cotyledon.GiveUp or None, not: 3 (int)"
    ]
    assert r["unknown_kwarg"][0] == "TypeError"
    assert r["backoff_zero"] == ["ValueError", "'base' must be a finite number of seconds > 0, not: 0"]
    assert r["backoff_max_below"] == ["ValueError", "'max' (1) must be at least 'base' (2)"]
    assert r["backoff_str"] == ["TypeError", "'base' must be a number of seconds, not: '1' (str)"]
    assert r["backoff_bool"][0] == "TypeError"
    assert r["backoff_nan"][0] == "ValueError"
    assert r["backoff_jitter_one"] == ["ValueError", "'jitter' must be from 0 to 1 (excluded), not: 1"]
    assert r["backoff_jitter_str"][0] == "TypeError"
    assert r["backoff_stable_neg"][0] == "ValueError"
    assert r["backoff_positional_jitter"][0] == "TypeError", "jitter is keyword only"
    assert r["give_up_zero"] == ["ValueError", "'failures' must be an int >= 1, not: 0"]
    assert r["give_up_float"] == ["TypeError", "'failures' must be an int, not: 1.5 (float)"]
    assert r["give_up_window_zero"][0] == "ValueError"
    assert r["give_up_window_inf"][0] == "ValueError"
    assert r["valid"] == ["ok", "UUID"]
    assert r["valid_default"] == ["ok", "UUID"]
    # A refused call added nothing; the valid ones carry their policy.
    assert r["services"] == [
        [
            "basic", "on-failure", True,
            "BackoffStatus(base=0.5, max=30.0, jitter=0.1, stable=10.0)",
            "GiveUpStatus(failures=5, window=60.0)",
        ],
        ["other", "always", False, "None", "None"],
    ]
    assert r["reprs"] == [
        "Backoff(0.5, 30.0, jitter=0.1, stable=10.0)", "GiveUp(5, 60.0)", True, 125,
    ]
