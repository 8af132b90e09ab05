"""systemd's notify protocol, seen from a socket standing for systemd's
(``conftest.NotifySocket``): READY/STATUS/MAINPID at start, RELOADING with
MONOTONIC_USEC before the reload hooks and READY after them, STOPPING with
EXTEND_TIMEOUT_USEC first on SIGTERM and SIGINT, WATCHDOG=1 from the
master's loop; systemd's variables in no worker's environment."""

from __future__ import annotations

import os
import signal
import time

import pytest

from test_lifecycle import run_service_pid, running_workers

pytestmark = pytest.mark.ours_only(
    reason="the reference tells systemd READY=1 only, and leaves its variables to workers "
    "but NOTIFY_SOCKET"
)

# The variables systemd hands a service's main process (not the engine's
# own list: a variable it forgot must still be seen in a worker).
SYSTEMD_VARS = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
)


def monotonic_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def assert_no_systemd_env(fields: dict[str, str]) -> None:
    """An 'env' event of app.py: neither os.environ nor C getenv has any
    of systemd's variables."""
    seen = {k: fields[k] for name in SYSTEMD_VARS for k in (name, "c" + name)}
    leaked = {k: v for k, v in seen.items() if v != "-"}
    assert not leaked, f"worker {fields['pid']} inherited {leaked}"


@pytest.mark.parametrize("notify", ["path", "abstract"], indirect=True)
def test_notify_sequence(start_app, notify):
    """Every variable systemd hands a service is set (WATCHDOG_PID naming
    another process); SIGTERM ends the path variant, SIGINT the abstract
    one."""
    sigint = notify.address.startswith("@")
    env = {
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": "200000",
        "WATCHDOG_PID": "1",
        "LISTEN_PID": "1",
        "LISTEN_FDS": "0",
        "LISTEN_FDNAMES": "none",
    }
    app = start_app("systemd", "0", *SYSTEMD_VARS, env=env)
    workers = running_workers(app, "sd", 2)
    # start: one datagram, before any worker was forked; then all running
    assert notify.wait("READY=1") == 0
    first = notify[0]
    assert first.has(f"MAINPID={app.pid}"), first
    assert first.has("STATUS=sd: 0/2 workers"), first
    notify.wait("STATUS=sd: 2/2 workers")
    for pid in workers.values():
        assert_no_systemd_env(app.event("env", pid=pid))
    # a replacement worker has none either
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    workers[1] = run_service_pid(app, "sd", 1, start)
    assert_no_systemd_env(app.event("env", start=start, pid=workers[1]))

    # reload: RELOADING=1, the hook (its own datagrams), READY=1
    before = notify.last()
    sent_at = monotonic_us()
    app.signal(signal.SIGHUP)
    r = notify.wait("RELOADING=1", before)
    mono = int(notify[r].value("MONOTONIC_USEC") or -1)
    assert sent_at <= mono <= notify[r].mono * 1e6, (
        f"MONOTONIC_USEC={mono} not between the SIGHUP ({sent_at}) and its arrival"
    )
    assert notify[r].has("STATUS=reloading; sd: *"), notify[r]
    assert not notify[r].has("READY=1"), notify[r]
    b = notify.wait("X-APP-HOOK=begin", r)
    e = notify.wait("X-APP-HOOK=end", b)
    ready = notify.wait("READY=1", r)
    assert ready > e, "READY=1 before the reload hook ended"
    assert notify[ready].has(f"MAINPID={app.pid}"), notify[ready]
    assert notify[ready].value("STATUS") is not None, notify[ready]
    # the master's os.environ lost NOTIFY_SOCKET once READY=1 went (as
    # Cotyledon's); it keeps the others
    hook = app.event("hook_env", pid=app.pid)
    assert hook["NOTIFY_SOCKET"] == "-"
    assert {k: hook[k] for k in SYSTEMD_VARS[1:]} == {k: env[k] for k in SYSTEMD_VARS[1:]}
    for pid in workers.values():
        app.event("reload", pid=pid)

    # WATCHDOG_PID names another process: not one WATCHDOG=1 in 3 periods
    left = notify[0].mono + 0.6 - time.clock_gettime(time.CLOCK_MONOTONIC)
    if left > 0:
        time.sleep(left)
    notify.flush()
    assert notify.count("WATCHDOG=1") == 0

    # stop
    before = notify.last()
    app.signal(signal.SIGINT if sigint else signal.SIGTERM)
    s = notify.wait("STOPPING=1", before)
    if sigint:
        # kill grace 0.3 s + 5 s
        assert notify[s].has("EXTEND_TIMEOUT_USEC=5300000"), notify[s]
        assert notify[s].has("STATUS=exiting: 2 workers left"), notify[s]
        assert app.wait_exit() == 1
    else:
        # graceful timeout 2 s + 1 s for the workers' own deadline + kill
        # grace 0.3 s + 5 s
        assert notify[s].has("EXTEND_TIMEOUT_USEC=8300000"), notify[s]
        assert notify[s].has("STATUS=stopping: 2 workers left"), notify[s]
        assert app.wait_exit() == 0
    app.wait_group_gone()
    notify.flush()
    assert notify.count("STOPPING=1") == 1
    assert notify.count("READY=1") == 2  # start, reload


def test_watchdog(start_app, notify):
    """WATCHDOG_USEC=200000, WATCHDOG_PID unset: WATCHDOG=1 every half
    period from the master's loop, so no gap above the period while idle;
    none while the loop is held by a 0.6 s reload hook; again after it.
    (Gaps between the kernel's arrival times.)"""
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"}
    app = start_app("systemd", "0.6", *SYSTEMD_VARS, env=env)
    workers = running_workers(app, "sd", 2)
    assert notify.wait("READY=1") == 0
    assert notify[0].has("WATCHDOG=1"), notify[0]
    prev = notify.wait("WATCHDOG=1", notify.wait("STATUS=sd: 2/2 workers"))
    gaps = []
    for _ in range(8):
        nxt = notify.wait("WATCHDOG=1", prev)
        gaps.append(notify[nxt].at - notify[prev].at)
        prev = nxt
    assert max(gaps) <= 0.2, f"idle master: WATCHDOG=1 gaps {gaps} (period 0.2 s)"

    before = notify.last()
    app.signal(signal.SIGHUP)
    r = notify.wait("RELOADING=1", before)
    b = notify.wait("X-APP-HOOK=begin", r)
    e = notify.wait("X-APP-HOOK=end", b)
    notify.wait("READY=1", e)
    assert notify.count("WATCHDOG=1", b + 1, e) == 0, "WATCHDOG=1 while the loop ran the hook"
    last = max(i for i in range(b) if notify[i].has("WATCHDOG=1"))
    nxt = notify.wait("WATCHDOG=1", e)
    assert notify[nxt].at - notify[last].at >= 0.5
    notify.wait("WATCHDOG=1", notify.wait("WATCHDOG=1", nxt))  # ticking again
    for pid in workers.values():
        app.event("reload", pid=pid)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()
