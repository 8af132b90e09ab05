"""Master CPU and page faults per fork during a start-up, Python face
against the CPython floor (benches/floor_app.py), same minutes.

    python3 benches/profile/fork_cost.py [ours|floor|NAME=COMMAND ...]

NAME=COMMAND adds a face (e.g. another build of the package:
"main=/tmp/venv-main/bin/python benches/app.py").

Each face starts N=BIG (env, default 1000) workers and, separately, 1
worker (wait_interval=0); once every worker is in run() (+0.3 s) the
master's on-CPU time (/proc/PID/schedstat) and minor faults
(/proc/PID/stat) are read. Per fork = (value at N=BIG - value at N=1) /
(BIG - 1), so the interpreter's start-up and imports cancel out. Also the
median worker's faults and on-CPU time from fork to idle. REPS (env,
default 3) rounds, medians last. Assumes benches/run.sh made
.venv-bench-ours and .venv-bench-ref."""
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FACES = {
    "ours": [f"{ROOT}/.venv-bench-ours/bin/python", f"{ROOT}/benches/app.py"],
    "floor": [f"{ROOT}/.venv-bench-ref/bin/python", f"{ROOT}/benches/floor_app.py"],
}
BIG = int(os.environ.get("BIG", "1000"))
REPS = int(os.environ.get("REPS", "3"))


def stat(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ns = int(open(f"/proc/{pid}/schedstat").read().split()[0])
    return ns, int(fields[7])  # on-CPU ns, minflt


def start_up(face, n):
    path = os.path.join(tempfile.mkdtemp(prefix="fork-cost-"), "sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.settimeout(60)
    env = dict(os.environ, BENCH_SOCK=path, BENCH_WORKERS=str(n),
               BENCH_WAIT_INTERVAL="0", BENCH_RELOAD="1")
    proc = subprocess.Popen(FACES[face], env=env, start_new_session=True)
    try:
        runs = {}
        while len(runs) < n:
            event = sock.recv(200).decode().split()
            if event[0] == "run":
                runs[int(event[1])] = int(event[2])
        time.sleep(0.3)
        return stat(proc.pid), [stat(pid) for pid in runs.values()]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sock.close()
        os.unlink(path)


def main():
    faces = []
    for arg in sys.argv[1:] or list(FACES):
        name, _, command = arg.partition("=")
        if command:
            FACES[name] = shlex.split(command)
        faces.append(name)
    results = {}
    for rep in range(REPS):
        for face in faces:
            (cpu1, flt1), _ = start_up(face, 1)
            (cpu, flt), workers = start_up(face, BIG)
            row = ((cpu - cpu1) / (BIG - 1) / 1000, (flt - flt1) / (BIG - 1),
                   statistics.median(w[1] for w in workers),
                   statistics.median(w[0] for w in workers) / 1000)
            results.setdefault(face, []).append(row)
            print(f"{face} round {rep}: master {row[0]:.0f} us and {row[1]:.1f} faults per fork;"
                  f" worker {row[2]:.0f} faults, {row[3]:.0f} us on CPU", flush=True)
    for face, rows in results.items():
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"MEDIAN {face}: master {med[0]:.0f} us and {med[1]:.1f} faults per fork;"
              f" worker {med[2]:.0f} faults, {med[3]:.0f} us on CPU")


if __name__ == "__main__":
    main()
