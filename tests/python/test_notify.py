"""systemd notification: READY=1 once (one line of its datagram, with
MAINPID= and STATUS=), NOTIFY_SOCKET hidden from workers. The rest of the
protocol is in test_systemd.py."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import AGAINST_REFERENCE
from test_lifecycle import started_workers


@pytest.mark.parametrize("notify", ["path", "abstract"], indirect=True)
def test_ready_sent_once(start_app, notify):
    app = start_app("notify", env={"NOTIFY_SOCKET": notify.address})
    workers = started_workers(app, "env", 2)
    envs = [app.event("env", wid=wid, pid=pid) for wid, pid in workers.items()]
    # Kill one worker: its replacement does not see it either.
    start = len(app.out.lines)
    os.kill(workers[0], signal.SIGKILL)
    e = app.event("env", start=start, wid=0)
    assert e["pid"] != str(workers[0])
    envs.append(e)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    notify.flush()
    assert notify.wait("READY=1") == 0
    if not AGAINST_REFERENCE:  # the reference sends READY=1 alone
        assert notify[0].has(f"MAINPID={app.pid}"), notify[0]
        assert notify[0].has("STATUS=env: 0/2 workers"), notify[0]
    assert notify.count("READY=1") == 1, notify.dgrams
    for e in envs:
        assert (e["notify"], e["c_getenv"]) == ("None", "None"), (
            f"NOTIFY_SOCKET leaked into worker {e['pid']}: os.environ={e['notify']}, "
            f"getenv()={e['c_getenv']}"
        )


def test_notify_socket_unreachable_is_ignored(start_app, tmp_path):
    app = start_app("notify", env={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    workers = started_workers(app, "env", 2)
    for pid in workers.values():
        app.event("env", pid=pid)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    assert "Traceback" not in app.err.text()
