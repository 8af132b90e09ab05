"""systemd notification: READY=1 once, NOTIFY_SOCKET hidden from workers."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from test_lifecycle import started_workers


def datagrams(sock: socket.socket, until) -> list[bytes]:
    """Receive datagrams while until() is False (and a little after)."""
    got = []
    grace = None
    while True:
        try:
            got.append(sock.recv(4096))
            continue
        except socket.timeout:
            pass
        if until():
            grace = grace or time.monotonic()
            if time.monotonic() - grace > 0.3:
                return got


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_sent_once(start_app, tmp_path, kind):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        addr = str(tmp_path / "notify.sock")
        sock.bind(addr)
        env_value = addr
    else:
        name = f"cotyledon-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        env_value = "@" + name
    sock.settimeout(0.05)
    try:
        app = start_app("notify", env={"NOTIFY_SOCKET": env_value})
        workers = started_workers(app, "env", 2)
        envs = [app.event("env", wid=wid, pid=pid) for wid, pid in workers.items()]
        # Kill one worker: its replacement does not see it either.
        start = len(app.out.lines)
        os.kill(workers[0], signal.SIGKILL)
        e = app.event("env", start=start, wid=0)
        assert e["pid"] != str(workers[0])
        envs.append(e)
        app.signal(signal.SIGTERM)
        got = datagrams(sock, lambda: not app.alive())
        assert app.wait_exit() == 0
    finally:
        sock.close()
    lines = [l for d in got for l in d.decode().splitlines()]
    assert lines.count("READY=1") == 1, got
    assert "READY=1" in got[0].decode().splitlines()
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
