"""The floor of any Python-face respawn: a minimal fork supervisor in pure
Python, no framework. Same configuration and events as benches/app.py
(BENCH_SOCK, BENCH_WORKERS; wait_interval is always 0). Each worker sends
"init", starts a thread that sends "run", then waits for signals; the
master respawns a dead worker at once (no limiter, no hooks, no logging)
and forwards SIGHUP to the workers.
Used by BENCHMARKS.md to show what CPython itself costs per respawn
(fork of an interpreter, after-fork hooks, a socket, a thread)."""

import os
import select
import signal
import socket
import threading
import time

SOCK = os.environ["BENCH_SOCK"]
N = int(os.environ.get("BENCH_WORKERS", "1"))


def send(sock, ev, wid):
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    sock.sendto(f"{ev} {wid} {os.getpid()} {t}".encode(), SOCK)


def worker(wid):
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    send(sock, "init", wid)
    threading.Thread(target=send, args=(sock, "run", wid)).start()
    signal.signal(signal.SIGHUP, lambda *a: send(sock, "reload", wid))
    while True:
        signal.pause()


def main():
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    hup = []
    signal.signal(signal.SIGHUP, lambda *a: hup.append(1))
    pids = {}

    def spawn(wid):
        pid = os.fork()
        if pid == 0:
            try:
                worker(wid)
            finally:
                os._exit(1)
        pids[pid] = wid

    for wid in range(N):
        spawn(wid)
    while True:
        select.select([r], [], [])
        os.read(r, 512)
        if hup:
            hup.clear()
            for pid in pids:
                os.kill(pid, signal.SIGHUP)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            wid = pids.pop(pid, None)
            if wid is not None:
                spawn(wid)


if __name__ == "__main__":
    main()
