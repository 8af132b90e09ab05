"""The CPython floor: the least a fork supervisor written in Python can do.

No framework, no limiter, no hooks, no logging, no titles: the benchmark
runs it as one more face ("floor", on the same interpreter as the others) so
that every ratio can be read against what forking, running and ending
CPython processes costs on the machine, measured in the same run. A target
the floor itself misses cannot be met by any engine whose workers are
CPython processes forked from the application.

Same configuration and events as benches/app.py (BENCH_SOCK,
BENCH_WORKERS; wait_interval is always 0, reload() always implemented).
Each worker sends "init", starts a thread that sends "run", then waits for
signals: SIGHUP sends "reload", SIGTERM sends "term" and exits, SIGINT exits
at once, and the kernel kills it when the master dies (PR_SET_PDEATHSIG).
The master respawns a dead worker at once and forwards SIGHUP; on SIGTERM
or SIGINT it forwards the signal, reaps every worker and exits.
"""

import ctypes
import os
import select
import signal
import socket
import sys
import threading
import time

SOCK = os.environ["BENCH_SOCK"]
N = int(os.environ.get("BENCH_WORKERS", "1"))
PR_SET_PDEATHSIG = 1


def send(sock, ev, wid):
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    try:
        sock.sendto(f"{ev} {wid} {os.getpid()} {t}".encode(), SOCK)
    except OSError:
        pass


def worker(wid, master):
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master:
        os._exit(1)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    send(sock, "init", wid)
    threading.Thread(target=send, args=(sock, "run", wid)).start()

    def on_term(*_):
        send(sock, "term", wid)
        os._exit(0)

    signal.signal(signal.SIGHUP, lambda *_: send(sock, "reload", wid))
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, lambda *_: os._exit(1))
    while True:
        signal.pause()


def main():
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    got = []
    for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _: got.append(s))
    pids = {}
    master = os.getpid()
    stopping = False

    def spawn(wid):
        pid = os.fork()
        if pid == 0:
            try:
                worker(wid, master)
            finally:
                os._exit(1)
        pids[pid] = wid

    for wid in range(N):
        spawn(wid)
    while pids or not stopping:
        select.select([r], [], [])
        os.read(r, 512)
        sigs, got[:] = set(got), []
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            if sig in sigs and not (stopping and sig == signal.SIGHUP):
                stopping = stopping or sig != signal.SIGHUP
                for pid in pids:
                    os.kill(pid, sig)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            wid = pids.pop(pid, None)
            if wid is not None and not stopping:
                spawn(wid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
