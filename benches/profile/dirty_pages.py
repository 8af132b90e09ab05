"""Which pages an idle Python worker holds privately, and what lives there.

    python3 benches/profile/dirty_pages.py APP_ARGV [--workers N] [--objects]
                                          [--top K] [--idle S]

APP_ARGV is the application's command line in one string, as for
one_event.py: "$PWD/.venv-bench-ours/bin/python $PWD/benches/app.py", or the
same with benches/floor_app.py (the CPython floor). Starts it with
BENCH_WORKERS=N (default 8), waits for every worker's "run" event and S
seconds more (default 1), then, for each worker, reads /proc/PID/pagemap
and /proc/kpagecount (root) and counts the pages mapped once only: the
worker's private memory (its USS), as the benchmark's "worker private"
(smaps Private_Clean + Private_Dirty, printed beside it).

The pages are grouped by mapping (libpython's data, `[heap]` (malloc),
anonymous memory (obmalloc arenas, thread stacks), the engine's extension
module, ...). For libpython, each private page is named by the symbols of
the ELF (`nm -S`) it holds: the interpreter's static objects and state.

--objects (our wheel or any app run through dump_hook.py) also names what
lives on each private anonymous page of the first worker: after the pages
are counted, the tool sends the worker SIGUSR1, whose handler
(benches/profile/dump_hook.py, installed in the master before run())
writes the address, size and type of every object the collector knows and
of their direct referents. Each private page's objects are counted by type
(functions and code objects by name): what the worker wrote.

Comparing two versions: the figures move by +-20 kB with the master's
hash seed (dict layouts, so which pages a worker writes); set
PYTHONHASHSEED and take the median over several seeds (0..9). And keep
every module compiled (`python -m compileall` after copying sources into a
venv, PYTHONDONTWRITEBYTECODE is set here): a module compiled at import
leaves a freed hole in the master's malloc heap that the worker's
allocations then write to (+40 to +90 kB per worker, which misled the
first measurements of this tool).

A subreaper; the process group is killed at the end.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import ctypes
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
# The benchmark's own "worker private" figure.
from driver import private_kb  # noqa: E402


def mappings(pid):
    """(start, end, perms, offset, path) of every mapping of ``pid``."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append((lo, hi, parts[1], int(parts[2], 16), path))
    return out


def private_pages(pid):
    """{mapping: [page addresses mapped by this process only]}."""
    found = {}
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open("/proc/kpagecount", "rb") as kc:
        for m in mappings(pid):
            lo, hi = m[0], m[1]
            if m[4] == "[vsyscall]":
                continue
            pm.seek(lo // PAGE * 8)
            raw = pm.read((hi - lo) // PAGE * 8)
            pages = []
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
                if not entry >> 63 & 1:
                    continue  # not present (swapped pages: none here)
                pfn = entry & ((1 << 55) - 1)
                kc.seek(pfn * 8)
                (count,) = struct.unpack("<Q", kc.read(8))
                if count == 1:
                    pages.append(lo + i * PAGE)
            if pages:
                found[m] = pages
    return found


def group(m, libpython):
    lo, hi, perms, off, path = m
    if path == libpython:
        return "libpython " + ("data/bss" if "w" in perms else "text/ro")
    if path in ("[heap]", "[stack]"):
        return path
    if not path:
        return f"anonymous {perms}"
    return os.path.basename(path) + (" data" if "w" in perms else " ro")


class Symbols:
    """The data symbols of an ELF, by address (nm -S)."""

    def __init__(self, path):
        out = subprocess.run(["nm", "-S", "--defined-only", path], capture_output=True,
                             text=True, check=True).stdout
        syms = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[2] in "dDbBrR":
                syms.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
        syms.sort()
        self.syms = syms
        self.starts = [s[0] for s in syms]

    def on_page(self, lo):
        """The symbols overlapping [lo, lo + PAGE), biggest first."""
        i = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        hits = []
        while i < len(self.syms) and self.syms[i][0] < lo + PAGE:
            a, size, name = self.syms[i]
            if a + size > lo:
                hits.append((min(a + size, lo + PAGE) - max(a, lo), name))
            i += 1
        return sorted(hits, reverse=True)


def libpython_of(pid):
    for m in mappings(pid):
        if "libpython" in os.path.basename(m[4]):
            return m[4]
    return None


def load_base(pid, path):
    return min(m[0] - m[3] for m in mappings(pid) if m[4] == path)


def read_dump(path):
    objs = []
    with open(path) as f:
        for line in f:
            addr, size, name = line.rstrip("\n").split("\t", 2)
            objs.append((int(addr), int(size), name))
    objs.sort()
    return objs


def objects_on(objs, starts, lo):
    i = max(bisect.bisect_right(starts, lo) - 1, 0)
    while i < len(objs) and objs[i][0] < lo + PAGE:
        a, size, name = objs[i]
        if a + size > lo:
            yield name
        i += 1


def report_worker(pid, pages, contents, smaps_kb, args, libpython, syms, dump, master_dump):
    by_group = collections.Counter()
    for m, ps in pages.items():
        by_group[group(m, libpython)] += len(ps)
    total = sum(by_group.values())
    print(f"worker {pid}: {total * PAGE // 1024} kB mapped once (smaps private "
          f"{smaps_kb} kB)")
    for name, n in by_group.most_common():
        print(f"  {n * PAGE // 1024:6d} kB  {name}")
    if not args.detail:
        return
    print("  mappings (private kB / size kB):")
    for m, ps in sorted(pages.items()):
        print(f"    {m[0]:#x}-{m[1]:#x} {m[2]} {len(ps) * PAGE // 1024:5d} / "
              f"{(m[1] - m[0]) // 1024:6d}  {m[4]}")
    if syms is not None:
        base = load_base(pid, libpython)
        named = collections.Counter()
        print("  libpython private pages (symbols on each, bytes):")
        for m, ps in pages.items():
            if m[4] != libpython:
                continue
            for p in ps:
                hits = syms.on_page(p - base)
                desc = ", ".join(f"{n}:{b}" for b, n in hits[:4])
                print(f"    {p - base:#x}  {desc}{' ...' if len(hits) > 4 else ''}")
                for b, n in hits:
                    named[n] += b
    if dump is not None:
        objs = read_dump(dump)
        starts = [o[0] for o in objs]
        mobjs = read_dump(master_dump)
        mstarts = [o[0] for o in mobjs]
        anon = [(p, m[4] or f"anon {m[0]:#x}") for m, ps in pages.items()
                if not m[4] or m[4] in ("[heap]", libpython) for p in ps]
        per_mapping = collections.defaultdict(collections.Counter)
        on_equal = collections.Counter()  # pages equal to the master's holding each kind
        written = collections.Counter()  # what the changed words belong to
        pages_by = collections.Counter()  # pages, by the first thing changed on each
        same = 0
        for p, where in anon:
            mine, theirs = contents[p]
            if theirs is None:
                pages_by["(not mapped in the master: new memory)"] += 1
                continue
            if mine == theirs:
                same += 1
                per_mapping[where]["(equal to the master's)"] += 1
                on_equal.update(set(objects_on(objs, starts, p)))
                continue
            what = []
            for off in range(0, PAGE, 8):
                if mine[off:off + 8] != theirs[off:off + 8]:
                    what.append(word_owner(objs, starts, mobjs, mstarts, p + off, where))
            written.update(set(what))
            pages_by[what[0]] += 1
            per_mapping[where][what[0].split(" +")[0]] += 1
        print(f"  anonymous, heap and libpython private pages: {len(anon)}; {same} equal to the master's "
              "(written and restored: a reference count up and down)")
        print("  private pages by mapping, by the first changed word's owner (top 8 each):")
        for where, kinds in sorted(per_mapping.items(), key=lambda kv: -sum(kv[1].values())):
            print(f"    {sum(kinds.values()):5d}  {where}: " + ", ".join(
                f"{n} {k}" for k, n in kinds.most_common(8)))
        print("  what lives on the pages equal to the master's (pages holding one, top):")
        for name, n in on_equal.most_common(args.top):
            print(f"    {n:5d}  {name}")
        print("  changed pages, by the first changed word's owner (top):")
        for name, n in pages_by.most_common(args.top):
            print(f"    {n:5d}  {name}")
        print("  owners of changed words, pages each (top):")
        for name, n in written.most_common(args.top):
            print(f"    {n:5d}  {name}")


def read_page(f, addr):
    try:
        f.seek(addr)
        return f.read(PAGE)
    except OSError:
        return None


def object_at(objs, starts, addr):
    i = bisect.bisect_right(starts, addr) - 1
    while i >= 0 and objs[i][0] + 4096 > addr:
        a, size, name = objs[i]
        if a <= addr < a + size:
            return a, name
        i -= 1
    return None


def word_owner(objs, starts, mobjs, mstarts, addr, where):
    """What the 8-byte word at ``addr`` belongs to: an object's header
    (its reference count, its GC links) or body, an object of the master
    the worker freed (or reused), or no object."""
    mine = object_at(objs, starts, addr)
    theirs = object_at(mobjs, mstarts, addr)
    if mine is not None:
        a, name = mine
        if theirs is not None and theirs != mine:
            return f"new {name} over the master's {theirs[1]}"
        if theirs is None:
            return f"new {name}"
        return f"{name} +{addr - a}"
    if theirs is not None:
        return f"freed: the master's {theirs[1]}"
    if where == "[heap]":
        return "[heap]: malloc"
    if not where.startswith("anon"):
        return "libpython: no object (static data, interpreter state)"
    if addr % (16 << 10) < 48:
        return "obmalloc pool header"
    return "no object (free block, stack, non-object data)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("app")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("--objects", action="store_true")
    ap.add_argument("--detail", action="store_true", help="list libpython pages")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--all", action="store_true", help="detail every worker, not only one")
    args = ap.parse_args()
    args.detail = args.detail or args.objects
    argv = shlex.split(args.app)
    tmp = tempfile.mkdtemp(prefix="dirty-pages-")
    env = dict(os.environ, BENCH_SOCK=os.path.join(tmp, "sock"),
               BENCH_WORKERS=str(args.workers), BENCH_WAIT_INTERVAL="0", BENCH_RELOAD="1")
    if args.objects:
        env["DUMP_DIR"] = tmp
        argv = [argv[0], os.path.join(HERE, "dump_hook.py"), *argv[1:]]
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(env["BENCH_SOCK"])
    sock.settimeout(30)
    app = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        pids = set()
        while len(pids) < args.workers:
            ev, _, pid, _ = sock.recv(200).decode().split()
            if ev == "run":
                pids.add(int(pid))
        time.sleep(args.idle)
        libpython = libpython_of(app.pid)
        syms = Symbols(libpython) if libpython and args.detail else None
        print(f"master {app.pid}: smaps private {private_kb(app.pid)} kB")
        workers = sorted(pids)
        sizes = sorted(private_kb(p) for p in workers)
        print(f"{len(workers)} workers, smaps private median {sizes[len(sizes) // 2]} kB "
              f"(min {sizes[0]}, max {sizes[-1]})")
        detailed = workers if args.all else workers[:1]
        for pid in detailed:
            # Counted before the dump: the dump itself writes to every object.
            pages = private_pages(pid)
            smaps_kb = private_kb(pid)
            # The worker's and the master's bytes, read before the dump
            # (which writes to both).
            contents = {}
            with open(f"/proc/{pid}/mem", "rb") as wm, open(f"/proc/{app.pid}/mem", "rb") as mm:
                for ps in pages.values():
                    for p in ps:
                        contents[p] = (read_page(wm, p), read_page(mm, p))
            dump = master_dump = None
            if args.objects:
                dump = os.path.join(tmp, f"objects.{pid}")
                master_dump = os.path.join(tmp, f"objects.{app.pid}")
                for who, path in ((pid, dump), (app.pid, master_dump)):
                    os.kill(who, signal.SIGUSR1)
                    deadline = time.monotonic() + 10
                    while not os.path.exists(path + ".done") and time.monotonic() < deadline:
                        time.sleep(0.05)
            report_worker(pid, pages, contents, smaps_kb, args, libpython, syms, dump, master_dump)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.pid, signal.SIGKILL)
        app.wait()
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break


if __name__ == "__main__":
    sys.exit(main())
