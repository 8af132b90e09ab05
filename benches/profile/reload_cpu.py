"""CPU and page faults per reload per worker, steady state: starts one
benchmark application with 4 workers (reload() implemented), reloads it 3
times to warm up, then K times, and reads each worker's on-CPU time (every
thread's /proc/<pid>/task/<tid>/schedstat) and minor faults around them.

    python3 benches/profile/reload_cpu.py APP_ARGV [K]

APP_ARGV is the application's command line in one string, as for
one_event.py: "$PWD/.venv-bench-ours/bin/python $PWD/benches/app.py", the
same with benches/floor_app.py, or target/bench/release/examples/bench_app.
A subreaper; the process group is killed at the end.
"""

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
WORKERS = 4


def minflt(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def oncpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that just ended
    return total


def main():
    argv = shlex.split(sys.argv[1])
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    path = os.path.join(tempfile.mkdtemp(prefix="reload-cpu-"), "sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, BENCH_SOCK=path, BENCH_WORKERS=str(WORKERS),
               BENCH_WAIT_INTERVAL="0", BENCH_RELOAD="1")
    app = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        pids = set()
        while len(pids) < WORKERS:
            ev, _, pid, _ = sock.recv(200).decode().split()
            if ev == "run":
                pids.add(int(pid))

        def reload_all():
            os.kill(app.pid, signal.SIGHUP)
            got = 0
            while got < WORKERS:
                got += sock.recv(200).decode().startswith("reload ")
            time.sleep(0.02)  # let every worker go back to sleep

        for _ in range(3):
            reload_all()
        before = {p: (minflt(p), oncpu_ns(p)) for p in pids}
        for _ in range(k):
            reload_all()
        for p in sorted(pids):
            faults = (minflt(p) - before[p][0]) / k
            cpu = (oncpu_ns(p) - before[p][1]) / k / 1e3
            print(f"worker {p}: {cpu:.1f} us on CPU and {faults:.1f} faults per reload")
    finally:
        try:
            os.killpg(app.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        app.wait()
        os.unlink(path)


if __name__ == "__main__":
    main()
