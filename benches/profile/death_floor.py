"""How long the kernel takes to end a SIGKILLed process, before any parent
can learn of it: SIGKILL -> its pidfd turns readable (exit notification,
sent after the address space is torn down). Every respawn pays this before
the master even wakes up.

    <venv>/bin/python benches/profile/death_floor.py [--import cotyledon]

Measures three children, 30 times each: an exec'd `sleep` (a small
process), and a forked child of this interpreter (after the optional
import), idle, without and with a second thread (a cotyledon worker has
one).
"""

import argparse
import importlib
import os
import select
import signal
import statistics
import subprocess
import threading
import time

REPS = 30


def measure(start) -> list[float]:
    out = []
    for _ in range(REPS):
        pid = start()
        time.sleep(0.03)  # let it settle in its idle wait
        fd = os.pidfd_open(pid)
        t0 = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        select.select([fd], [], [], 5)
        out.append((time.monotonic_ns() - t0) / 1e3)
        os.close(fd)
        os.waitpid(pid, 0)
    return out


def forked(with_thread: bool):
    def start() -> int:
        pid = os.fork()
        if pid == 0:
            if with_thread:
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            time.sleep(60)
            os._exit(0)
        return pid

    return start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--import", dest="modules", action="append", default=[])
    args = ap.parse_args()
    for m in args.modules:
        importlib.import_module(m)
    cases = [
        ("exec'd sleep (small process)", lambda: subprocess.Popen(["sleep", "60"]).pid),
        ("forked CPython child, idle", forked(False)),
        ("forked CPython child, idle, 2 threads", forked(True)),
    ]
    for name, start in cases:
        xs = sorted(measure(start))
        print(f"{name:40s} SIGKILL -> exit notified: median {statistics.median(xs):5.0f} us, "
              f"p90 {xs[int(len(xs) * 0.9)]:5.0f} us")


if __name__ == "__main__":
    main()
