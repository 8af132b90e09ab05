"""asyncio services (``async def run/terminate/reload``): a TCP server of 4
workers that finishes the request in flight when SIGTERM comes, async
reload(), a plain run() with async callbacks, and the loop's clean-up."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from conftest import APPS, DEADLINE, wait_pids_gone

pytestmark = pytest.mark.ours_only(reason="the reference has no asyncio services")

AIO = os.path.join(APPS, "aio.py")


def start_aio(start_app, scenario):
    return start_app(scenario, script=AIO)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.settimeout(DEADLINE)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def expected_answer(tag: bytes) -> bytes:
    """What apps/aio.py's answer() sends for ``tag``."""
    return (tag + b":" + b"x" * 1000 + b"\n") * 4096


def request(port: int, tag: bytes) -> bytes:
    with connect(port) as sock:
        sock.sendall(tag + b"\nGO\n")
        return read_all(sock)


def started_tcp(start_app):
    app = start_aio(start_app, "tcp")
    port = int(app.event("port")["port"])
    listening = {app.event("listening", wid=w)["pid"] for w in range(4)}
    assert len(listening) == 4
    app.event("run", name="mixed")
    return app, port


def test_tcp_server_finishes_request_in_flight_on_sigterm(start_app):
    app, port = started_tcp(start_app)
    assert request(port, b"warmup") == expected_answer(b"warmup")

    client = connect(port)
    try:
        client.sendall(b"inflight\n")
        pid = app.event("request", tag="inflight")["pid"]
        start = len(app.out.lines)
        app.signal(signal.SIGTERM)
        # terminate() of the worker holding the request ran on its loop,
        # with the request in flight; only then does the client ask for
        # its answer.
        term = app.event("terminate", start=start, pid=pid)
        assert term["in_flight"] == "1", term
        assert term["same_loop"] == "True" and term["loop_thread"] == "True", term
        client.sendall(b"GO\n")
        assert read_all(client) == expected_answer(b"inflight")
    finally:
        client.close()
    app.event("answered", tag="inflight", pid=pid)
    app.event("terminated", pid=pid)
    assert app.wait_exit(DEADLINE) == 0
    assert len(app.events("terminate")) == 5  # 4 tcp + mixed
    app.wait_group_gone(5)
    out = app.out.text() + app.err.text()
    for bad in ("Traceback", "Unhandled exception", "Graceful shutdown timeout"):
        assert bad not in out
    # Nobody listens any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()


def test_async_reload_runs_on_the_loop(start_app):
    app, port = started_tcp(start_app)
    plain = app.event("run", name="plain")
    # The plain worker never imported asyncio (nor did the master).
    assert plain["asyncio"] == "False", plain
    pids = {app.event("listening", wid=w)["pid"] for w in range(4)}

    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    reloads = [app.event("reload", start=start, pid=p) for p in pids]
    assert all(r["same_loop"] == "True" and r["loop_thread"] == "True" for r in reloads), reloads
    app.event("reload", start=start, name="mixed")
    # Reloaded in place: the same workers still serve.
    assert request(port, b"after-reload") == expected_answer(b"after-reload")
    served = app.event("answered", start=start, tag="after-reload")
    assert served["pid"] in pids
    # The plain service's default reload() restarted its worker: status 0.
    assert app.event("dead", start=start, wid=0)["code"] == "0"

    # A worker's own SIGTERM: status 0 for the master, a new worker.
    start = len(app.out.lines)
    os.kill(int(served["pid"]), signal.SIGTERM)
    app.event("terminated", start=start, pid=served["pid"])
    dead = app.event("dead", start=start, wid=served["wid"])
    assert dead["code"] == "0", dead
    assert app.event("listening", start=start, wid=served["wid"])["pid"] not in pids

    app.signal(signal.SIGTERM)
    assert app.wait_exit(DEADLINE) == 0
    wait_pids_gone(pids, 5)
    app.event("terminate", name="mixed")
    assert "Traceback" not in app.out.text() + app.err.text()


def test_loop_cleaned_up_at_exit(start_app):
    app = start_aio(start_app, "cleanup")
    pid = app.event("running")["pid"]
    os.kill(int(pid), signal.SIGTERM)
    # No terminate(): run() is cancelled, then the tasks left, the async
    # generators and the default executor, whose job finishes, in order.
    dead = app.event("dead", wid=0)
    assert dead["code"] == "0", dead
    order = [
        int(app.event(e, pid=pid)["_index"])
        for e in ("run_cancelled", "task_cancelled", "agen_closed", "executor_job_done")
    ]
    assert order == sorted(order) and order[-1] < int(dead["_index"]), order
    assert app.event("running", start=int(dead["_index"]))["pid"] != pid
    app.signal(signal.SIGTERM)
    assert app.wait_exit(DEADLINE) == 0
    app.wait_group_gone(5)
    assert "Traceback" not in app.out.text() + app.err.text()


def test_async_run_raising_gives_status_2(start_app):
    app = start_aio(start_app, "crash")
    pid = app.event("crash")["pid"]
    dead = app.event("dead", wid=0)
    assert dead["code"] == "2", dead
    text = app.out.text() + app.err.text()
    assert "Unhandled exception" in text and "ValueError: async boom" in text
    # Respawned with the same id.
    assert app.event("crash", start=int(dead["_index"]))["pid"] != pid
    app.signal(signal.SIGTERM)
    assert app.wait_exit(DEADLINE) == 0
    app.wait_group_gone(5)
