"""Run a command as a child of a child subreaper and reap every orphan.

Usage: python subreaper.py [--grace SECONDS] -- COMMAND [ARGS...]

The process marks itself PR_SET_CHILD_SUBREAPER, so processes orphaned below
COMMAND (for instance the workers of a killed master) are re-parented to it
instead of to PID 1, which does not reap on this kind of machine (zombies
would look alive to ``os.kill(pid, 0)``). Every child is reaped as soon as it
exits. When COMMAND exits, orphans still alive get ``--grace`` seconds to end
on their own, then are killed and reported on stderr. The exit status is the
one of COMMAND (128 + signal number when it was killed by a signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.prctl(
        ctypes.c_int(PR_SET_CHILD_SUBREAPER),
        ctypes.c_ulong(1),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    return rc == 0


def children_of(ppid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ppid."""
    result = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid and fields[0] != "Z":
            result.append(int(entry))
    return result


def reap_nohang() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    grace = 5.0
    if argv[:1] == ["--grace"]:
        grace = float(argv[1])
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if not set_subreaper():
        print("subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed", file=sys.stderr)

    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, forward)

    status = None
    while status is None:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            status = 1
            break
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(raw)
            child.returncode = status

    deadline = time.monotonic() + grace
    left = children_of(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        reap_nohang()
        left = children_of(os.getpid())
    if left:
        print(
            f"subreaper: {len(left)} process(es) left behind, killing: {left}",
            file=sys.stderr,
        )
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    reap_nohang()
    if status < 0:
        return 128 - status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
