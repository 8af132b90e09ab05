"""Start one benchmark application, wait until its N workers are in run(),
then cause one kind of event and time it; prints `T0 <CLOCK_MONOTONIC ns>`
just before each event so that a `perf record -k CLOCK_MONOTONIC` taken
around this script can be cut at that moment (see perf_split.py).

    python3 benches/profile/one_event.py APP_ARGV N startup|respawn|reload|stop|int|kill

APP_ARGV is the application's command line in one string, e.g.
"$PWD/.venv-bench-ours/bin/python $PWD/benches/app.py". Also prints each
worker's on-CPU time from fork to run() (/proc/<pid>/schedstat). A
subreaper, like the driver; the process group is killed at the end.
"""

import ctypes
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def oncpu_us(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e3
    except OSError:
        return None


def main():
    argv, n, kind = shlex.split(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def reap():
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.01)

    threading.Thread(target=reap, daemon=True).start()
    path = os.path.join(tempfile.mkdtemp(prefix="one-event-"), "sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    env = dict(os.environ, BENCH_SOCK=path, BENCH_WORKERS=str(n), BENCH_WAIT_INTERVAL="0",
               BENCH_RELOAD="1")
    t0 = time.monotonic_ns()
    app = subprocess.Popen(argv, env=env, start_new_session=True)

    def recv():
        ev, wid, pid, ts = sock.recv(200).decode().split()
        return ev, int(wid), int(pid), int(ts)

    runs = {}
    try:
        while len(runs) < n:
            ev, wid, pid, ts = recv()
            if ev == "run":
                runs[wid] = (pid, ts)
        cpu = sorted(oncpu_us(p) or 0 for p, _ in runs.values())
        last = max(ts for _, ts in runs.values())
        print(f"start-up {(last - t0) / 1e6:.1f} ms; worker on-CPU to run(): median "
              f"{cpu[len(cpu) // 2]:.0f} us; master on-CPU {oncpu_us(app.pid):.0f} us")
        time.sleep(0.3)
        if kind == "respawn":
            for _ in range(3):
                os.kill(app.pid, signal.SIGHUP)  # clears the fork-rate limiter
                got = 0
                while got < n:
                    got += recv()[0] == "reload"
                time.sleep(0.1)
                old = runs[0][0]
                t0 = time.monotonic_ns()
                print("T0", t0, flush=True)
                os.kill(old, signal.SIGKILL)
                while True:
                    ev, wid, pid, ts = recv()
                    if ev == "run" and wid == 0:
                        break
                runs[0] = (pid, ts)
                print(f"respawn {(ts - t0) / 1e6:.2f} ms")
        elif kind == "reload":
            for _ in range(10):
                t0 = time.monotonic_ns()
                print("T0", t0, flush=True)
                os.kill(app.pid, signal.SIGHUP)
                got, last = 0, 0
                while got < n:
                    ev, _, _, ts = recv()
                    if ev == "reload":
                        got, last = got + 1, max(last, ts)
                print(f"reload fan-out {(last - t0) / 1e6:.2f} ms")
                time.sleep(0.05)
        elif kind in ("stop", "int", "kill"):
            threading.Thread(target=lambda: [sock.recv(200) for _ in iter(int, 1)],
                             daemon=True).start()
            fds = [os.pidfd_open(app.pid)] if kind != "kill" else []
            fds += [os.pidfd_open(p) for p, _ in runs.values()]
            t0 = time.monotonic_ns()
            print("T0", t0, flush=True)
            sig = {"stop": signal.SIGTERM, "int": signal.SIGINT, "kill": signal.SIGKILL}[kind]
            os.kill(app.pid, sig)
            for fd in fds:
                select.select([fd], [], [], 30)
            print(f"{kind}: all gone after {(time.monotonic_ns() - t0) / 1e6:.1f} ms")
    finally:
        try:
            os.killpg(app.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.unlink(path)


if __name__ == "__main__":
    main()
