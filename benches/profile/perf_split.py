"""Reads `perf script -F pid,tid,comm,time,ip,sym,dso` output (a `perf
record -a -g -k CLOCK_MONOTONIC -F HZ` around one_event.py) on stdin and
prints where the workers' CPU went after the first `T0`: on-CPU time per
worker and the functions by inclusive time.

    perf script -i perf.data -F pid,tid,comm,time,ip,sym,dso | \
        python3 benches/profile/perf_split.py T0_NS HZ [MASTER_PID]

Without MASTER_PID, the process with the most samples is taken as the
master; the other processes of the application are its workers.
"""

import collections
import re
import sys

APP_COMMS = ("app.py", "bench", "python", "callbacks", "run")


def main():
    t0, hz = int(sys.argv[1]) / 1e9, float(sys.argv[2])
    master = sys.argv[3] if len(sys.argv) > 3 else None
    samples = []
    for block in sys.stdin.read().split("\n\n"):
        lines = block.strip("\n").split("\n")
        head = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):", lines[0]) if lines[0] else None
        if not head or float(head.group(4)) < t0:
            continue
        comm = head.group(1)
        if not comm.startswith(APP_COMMS):
            continue
        frames = []
        for line in lines[1:]:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append(re.sub(r"\+0x[0-9a-f]+", "", parts[1]).split(" (")[0])
        samples.append((comm, head.group(2), frames))
    if master is None:
        master = collections.Counter(s[1] for s in samples).most_common(1)[0][0]
    workers = [s for s in samples if s[1] != master]
    pids = {s[1] for s in workers}
    if not pids:
        print("no worker samples after T0")
        return
    per = 1e6 / hz / len(pids)
    print(f"{len(pids)} workers: {len(workers) * per:.0f} us on CPU each; master "
          f"{sum(1 for s in samples if s[1] == master) / hz * 1e3:.1f} ms")
    inclusive = collections.Counter()
    for _, _, frames in workers:
        for f in set(frames):
            inclusive[f] += 1
    for name, count in inclusive.most_common(40):
        print(f"{count * per:8.1f} us {100 * count / len(workers):5.1f}%  {name}")


if __name__ == "__main__":
    main()
