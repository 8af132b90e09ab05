#!/usr/bin/env python3
"""Benchmark driver: our engine against the reference Cotyledon 2.2.0.

Python 3.11 standard library only. Drives real applications from outside
(benches/app.py for the Python faces, the bench_app example for the Rust
face, benches/c_app.c for the C face): each worker reports its events
(`<event> <worker id> <pid> <CLOCK_MONOTONIC ns>`) over a UNIX datagram
socket; the driver watches processes through pidfds and /proc, makes itself
a child subreaper (orphaned workers are re-parented to it and reaped at
once, not left as zombies that look alive), bounds every wait with a
deadline and kills each scenario's process group at its end.

Usage: driver.py --mode quick|full --face NAME=ARGV... [--out FILE]
(benches/run.sh builds the faces and calls it.) Times are never asserted:
the table says which targets hold.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class ScenarioError(Exception):
    pass


# ---------------------------------------------------------------- processes


class Reaper:
    """Reaps every child and orphan of the driver (we are a subreaper)."""

    def __init__(self) -> None:
        self.status: dict[int, tuple[int, int]] = {}
        self.lock = threading.Lock()
        t = threading.Thread(target=self._loop, name="reaper", daemon=True)
        t.start()

    def _loop(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.005)
                continue
            except InterruptedError:
                continue
            with self.lock:
                self.status[pid] = (os.waitstatus_to_exitcode(st), now())

    def exit_code(self, pid: int) -> int | None:
        with self.lock:
            v = self.status.get(pid)
        return None if v is None else v[0]


def proc_state(pid: int) -> str | None:
    """The /proc state letter of pid, None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def private_kb(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def wait_pidfds(fds: dict[int, int], deadline: int) -> dict[int, int]:
    """Polls pidfds {fd: pid} until all are readable (the process ended)
    or the deadline; returns {pid: time it was seen gone}."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    gone: dict[int, int] = {}
    left = set(fds)
    while left:
        remaining = deadline - now()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(max(1, remaining // 1_000_000)):
            t = now()
            if fd in left:
                left.discard(fd)
                poller.unregister(fd)
                gone[fds[fd]] = t
    return gone


# ---------------------------------------------------------------- events


class Events:
    """The datagram socket the workers report to, read by a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.log: list[tuple[str, int, int, int]] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name="events", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(256)
            except TimeoutError:
                continue
            except OSError:
                return
            batch = [data]
            while True:
                try:
                    batch.append(self.sock.recv(256, socket.MSG_DONTWAIT))
                except (BlockingIOError, OSError):
                    break
            parsed = []
            for d in batch:
                p = d.decode().split()
                parsed.append((p[0], int(p[1]), int(p[2]), int(p[3])))
            with self.cond:
                self.log.extend(parsed)
                self.cond.notify_all()

    def wait(self, pred, deadline: int) -> bool:
        """Waits until pred(log) holds or the deadline passes."""
        with self.cond:
            while True:
                if pred(self.log):
                    return True
                remaining = deadline - now()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining / 1e9, 0.5))

    def close(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Collect:
    """An incremental view of the log: events `ev` after `since` (ns) and
    from log position `start`, keyed by worker id (latest per id)."""

    def __init__(self, ev: str, since: int, start: int = 0, exclude_pids=()) -> None:
        self.ev = ev
        self.since = since
        self.pos = start
        self.exclude = set(exclude_pids)
        self.by_wid: dict[int, tuple[int, int]] = {}
        self.count = 0

    def update(self, log) -> None:
        for i in range(self.pos, len(log)):
            ev, wid, pid, t = log[i]
            if ev == self.ev and t > self.since and pid not in self.exclude:
                self.by_wid[wid] = (pid, t)
                self.count += 1
        self.pos = len(log)

    def has(self, n: int):
        def pred(log) -> bool:
            self.update(log)
            return len(self.by_wid) >= n

        return pred

    def last_time(self) -> int:
        return max(t for _, t in self.by_wid.values())

    def first_time(self) -> int:
        return min(t for _, t in self.by_wid.values())


# ---------------------------------------------------------------- apps


class App:
    """One run of a benchmark application (a master and its workers)."""

    counter = 0

    def __init__(
        self,
        ctx: "Context",
        face: str,
        workers: int,
        wait: str,
        reload: bool = True,
        extra_env: dict[str, str] | None = None,
    ):
        App.counter += 1
        self.ctx = ctx
        self.workers = workers
        self.events = Events(os.path.join(ctx.tmp, f"ev{App.counter}.sock"))
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update(
            BENCH_SOCK=self.events.path,
            BENCH_WORKERS=str(workers),
            BENCH_WAIT_INTERVAL=wait,
            BENCH_RELOAD="1" if reload else "0",
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(extra_env or {})
        argv = ctx.faces[face]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, ctx.app_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        self.t_launch = now()
        self.pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
        self.pidfd = os.pidfd_open(self.pid)
        self.pgid = self.pid

    def wait_started(self, timeout: float) -> Collect:
        """Waits for every worker's run(); returns the collection."""
        c = Collect("run", 0)
        if not self.events.wait(c.has(self.workers), now() + int(timeout * 1e9)):
            raise ScenarioError(
                f"only {len(c.by_wid)}/{self.workers} workers in run() after {timeout:.0f} s"
            )
        return c

    def worker_pids(self, c: Collect) -> dict[int, int]:
        return {wid: pid for wid, (pid, _) in c.by_wid.items()}

    def sighup_and_wait_reloads(self, timeout: float = 20) -> None:
        """SIGHUP (which also clears the fork-rate limiter) and waits for
        every worker's reload()."""
        t0 = now()
        c = Collect("reload", t0, len(self.events.log))
        os.kill(self.pid, signal.SIGHUP)
        if not self.events.wait(c.has(self.workers), t0 + int(timeout * 1e9)):
            raise ScenarioError(f"SIGHUP: {len(c.by_wid)}/{self.workers} reload() calls")

    def master_gone(self, timeout: float) -> int | None:
        r = wait_pidfds({self.pidfd: self.pid}, now() + int(timeout * 1e9))
        return r.get(self.pid)

    def teardown(self) -> None:
        """SIGKILL to the process group, then waits until it is empty."""
        deadline = time.monotonic() + 15
        while True:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                print(f"warning: process group {self.pgid} still alive", file=sys.stderr)
                break
            time.sleep(0.01)
        os.close(self.pidfd)
        self.events.close()


class Context:
    def __init__(self, faces: dict[str, list[str]], tmp: str, app_log: str):
        self.faces = faces
        self.tmp = tmp
        self.app_log = app_log
        self.reaper = Reaper()


def run_app(ctx, face, workers, wait, fn, reload=True, env=None):
    app = App(ctx, face, workers, wait, reload, env)
    try:
        return fn(app)
    finally:
        app.teardown()


def settle(seconds: float = 0.05) -> None:
    time.sleep(seconds)


# ---------------------------------------------------------------- scenarios
# Each returns {"samples": [seconds...], ...extra}; failures raise
# ScenarioError (recorded, the run goes on).


def startup_timeout(n: int, wait: str) -> float:
    per = 0.01 if wait == "default" else 0.0
    return 30 + n * (per + 0.05)


def sc_startup(ctx, face, n, wait, reps, env=None):
    samples = []
    for _ in range(reps):

        def one(app):
            c = app.wait_started(startup_timeout(n, wait))
            return (c.last_time() - app.t_launch) / 1e9

        samples.append(run_app(ctx, face, n, wait, one, env=env))
        settle(0.2)
    return {"samples": samples}


def sc_stability(ctx, face, n, hold=10.0):
    """Start-up with wait_interval=0, then every worker must stay up for
    `hold` seconds with no respawn."""

    def one(app):
        try:
            c = app.wait_started(startup_timeout(n, "0"))
        except ScenarioError as e:
            inits = sum(1 for e_ in app.events.log if e_[0] == "init")
            return {"samples": [], "stable": False, "error": str(e), "inits": inits}
        t_start = (c.last_time() - app.t_launch) / 1e9
        pids = app.worker_pids(c)
        time.sleep(hold)
        alive_n = sum(1 for p in pids.values() if alive(p))
        with app.events.cond:
            inits = sum(1 for e in app.events.log if e[0] == "init")
        threads = int(proc_status(app.pid)["Threads"]) if alive(app.pid) else None
        fds = len(os.listdir(f"/proc/{app.pid}/fd")) if alive(app.pid) else None
        # Memory of the idle workers: their proportional share (PSS, what
        # they cost the machine together) and each one's private pages.
        pss, priv = 0, []
        for p in pids.values():
            try:
                pss += pss_kb(p)
                priv.append(private_kb(p))
            except OSError:
                pass
        return {
            "workers_pss_kb": pss,
            "master_pss_kb": pss_kb(app.pid) if alive(app.pid) else None,
            "worker_private_median_kb": statistics.median(priv) if priv else None,
            "samples": [t_start],
            "stable": alive_n == n and inits == n and alive(app.pid),
            "alive_after_hold": alive_n,
            "inits": inits,
            "master_threads": threads,
            "master_fds": fds,
        }

    return run_app(ctx, face, n, "0", one)


def sc_respawn(ctx, face, n, wait, reps):
    """SIGKILL one worker -> its replacement (same id) in run(). The limiter
    is cleared by a SIGHUP first (reload() is implemented and only reports),
    so no 'Forking too fast' sleep gets in the way."""

    def one(app):
        c = app.wait_started(startup_timeout(n, wait))
        pids = app.worker_pids(c)
        samples, init_samples = [], []
        since_reset = None
        for i in range(reps):
            if since_reset is None or since_reset >= min(n, 8):
                app.sighup_and_wait_reloads()
                since_reset = 0
                settle(0.1)
            wid = (i * 7) % n
            old = pids[wid]
            start = len(app.events.log)
            run_c = Collect("run", 0, start, exclude_pids=[old])
            init_c = Collect("init", 0, start, exclude_pids=[old])
            t0 = now()
            os.kill(old, signal.SIGKILL)

            def pred(log, wid=wid):
                run_c.update(log)
                init_c.update(log)
                return wid in run_c.by_wid

            if not app.events.wait(pred, t0 + 15 * 10**9):
                raise ScenarioError(f"worker {wid} not respawned within 15 s")
            pid, t = run_c.by_wid[wid]
            samples.append((t - t0) / 1e9)
            if wid in init_c.by_wid:
                init_samples.append((init_c.by_wid[wid][1] - t0) / 1e9)
            pids[wid] = pid
            since_reset += 1
            settle(0.05)
        return {"samples": samples, "to_init": init_samples}

    return run_app(ctx, face, n, wait, one)


def sc_mass_respawn(ctx, face, n, reps):
    """SIGKILL every worker -> all back in run(), limiter cleared first."""

    def one(app):
        c = app.wait_started(startup_timeout(n, "0"))
        pids = app.worker_pids(c)
        samples = []
        for _ in range(reps):
            app.sighup_and_wait_reloads()
            settle(0.1)
            rc = Collect("run", 0, len(app.events.log), exclude_pids=pids.values())
            t0 = now()
            for p in pids.values():
                os.kill(p, signal.SIGKILL)
            if not app.events.wait(rc.has(n), t0 + 30 * 10**9):
                raise ScenarioError(f"only {len(rc.by_wid)}/{n} back within 30 s")
            samples.append((rc.last_time() - t0) / 1e9)
            pids = {w: p for w, (p, _) in rc.by_wid.items()}
            settle(0.1)
        return {"samples": samples}

    return run_app(ctx, face, n, "0", one)


def sc_mass_respawn_cold(ctx, face, n, reps, window=6.0):
    """SIGKILL every worker right after start-up (the limiter holds the
    start-up forks): time to the first replacement, and how many are back
    within `window` seconds (the fork-rate limit allows one per 5 s)."""
    samples, back = [], []
    for _ in range(reps):

        def one(app):
            c = app.wait_started(startup_timeout(n, "0"))
            pids = app.worker_pids(c)
            rc = Collect("run", 0, len(app.events.log), exclude_pids=pids.values())
            t0 = now()
            for p in pids.values():
                os.kill(p, signal.SIGKILL)
            app.events.wait(rc.has(n), t0 + int(window * 1e9))
            with app.events.cond:
                rc.update(app.events.log)
            first = (rc.first_time() - t0) / 1e9 if rc.by_wid else None
            return first, len(rc.by_wid)

        first, k = run_app(ctx, face, n, "0", one)
        if first is not None:
            samples.append(first)
        back.append(k)
    return {"samples": samples, "back_within_%gs" % window: back}


def sc_reload(ctx, face, n, reps, implemented):
    """SIGHUP -> every worker's reload() called (implemented), or every
    worker restarted and back in run() (the default reload)."""

    def one(app):
        c = app.wait_started(startup_timeout(n, "0"))
        pids = app.worker_pids(c)
        samples = []
        settle(0.2)
        for _ in range(reps):
            start = len(app.events.log)
            t0 = now()
            if implemented:
                rc = Collect("reload", t0, start)
            else:
                rc = Collect("run", t0, start, exclude_pids=pids.values())
            os.kill(app.pid, signal.SIGHUP)
            if not app.events.wait(rc.has(n), t0 + 30 * 10**9):
                raise ScenarioError(f"only {len(rc.by_wid)}/{n} reloaded within 30 s")
            samples.append((rc.last_time() - t0) / 1e9)
            if not implemented:
                pids = {w: p for w, (p, _) in rc.by_wid.items()}
            settle(0.1)
        return {"samples": samples}

    return run_app(ctx, face, n, "0", one, reload=implemented)


def sc_stop(ctx, face, n, reps, kind):
    """kind: 'term' (graceful stop: master exited and every terminate()
    ran), 'int' (SIGINT: master and every worker gone), 'kill' (SIGKILL
    to the master: every worker gone)."""
    samples, master_times, codes = [], [], []
    for _ in range(reps):

        def one(app):
            c = app.wait_started(startup_timeout(n, "0"))
            pids = app.worker_pids(c)
            settle(0.2)
            wfds = {}
            for p in pids.values():
                try:
                    wfds[os.pidfd_open(p)] = p
                except ProcessLookupError:
                    pass
            try:
                term_c = Collect("term", 0, len(app.events.log))
                t0 = now()
                sig = {"term": signal.SIGTERM, "int": signal.SIGINT, "kill": signal.SIGKILL}[kind]
                os.kill(app.pid, sig)
                deadline = t0 + 30 * 10**9
                fds = dict(wfds)
                if kind != "kill":
                    fds[app.pidfd] = app.pid
                gone = wait_pidfds(fds, deadline)
                if app.pid in fds.values() and app.pid not in gone:
                    raise ScenarioError("master still alive after 30 s")
                if kind == "term":
                    if not app.events.wait(term_c.has(n), deadline):
                        raise ScenarioError(f"only {len(term_c.by_wid)}/{n} terminate() calls")
                    end = max(gone[app.pid], term_c.last_time())
                else:
                    missing = [p for p in pids.values() if p not in gone]
                    if missing:
                        raise ScenarioError(f"{len(missing)} workers still alive after 30 s")
                    end = max(gone.values())
                m = (gone[app.pid] - t0) / 1e9 if app.pid in gone else None
                return (end - t0) / 1e9, m
            finally:
                for fd in wfds:
                    os.close(fd)

        s, m = run_app(ctx, face, n, "0", one)
        samples.append(s)
        if m is not None:
            master_times.append(m)
        settle(0.2)
    out = {"samples": samples}
    if master_times:
        out["master_exit"] = master_times
    return out


def sc_storm(ctx, face, n, reps, count=500):
    """`count` SIGHUPs back to back to the master: every worker must see a
    reload() after the last one was sent (the last one is acted on)."""

    def one(app):
        c = app.wait_started(startup_timeout(n, "0"))
        pids = app.worker_pids(c)
        samples, acted, reloads = [], [], []
        settle(0.2)
        for _ in range(reps):
            start = len(app.events.log)
            for _ in range(count - 1):
                os.kill(app.pid, signal.SIGHUP)
            os.kill(app.pid, signal.SIGHUP)
            t_last = now()
            rc = Collect("reload", t_last, start)
            ok = app.events.wait(rc.has(n), t_last + 5 * 10**9)
            acted.append(len(rc.by_wid))
            if ok:
                samples.append((rc.last_time() - t_last) / 1e9)
            settle(0.3)
            with app.events.cond:
                reloads.append(sum(1 for e in app.events.log[start:] if e[0] == "reload"))
        restarted = sum(1 for p in pids.values() if not alive(p))
        return {
            "samples": samples,
            "acted_on_last": all(a == n for a in acted),
            "workers_reloaded_after_last": acted,
            "reload_calls_per_storm": reloads,
            "master_alive": alive(app.pid),
            "workers_restarted": restarted,
        }

    return run_app(ctx, face, n, "0", one)


def sc_footprint(ctx, face, n, window=5.0):
    def one(app):
        c = app.wait_started(startup_timeout(n, "0"))
        pids = app.worker_pids(c)
        settle(1.0)
        st = proc_status(app.pid)
        fds = len(os.listdir(f"/proc/{app.pid}/fd"))
        t0 = cpu_ticks(app.pid)
        time.sleep(window)
        cpu = (cpu_ticks(app.pid) - t0) / CLK_TCK
        st2 = proc_status(app.pid)
        wpriv = [private_kb(p) for p in pids.values() if alive(p)]
        wthreads = [int(proc_status(p)["Threads"]) for p in pids.values() if alive(p)]
        return {
            "samples": [],
            "master_threads": int(st2["Threads"]),
            "master_fds": fds,
            "master_rss_kb": int(st2["VmRSS"].split()[0]),
            "master_private_kb": private_kb(app.pid),
            "master_cpu_s": cpu,
            "worker_private_kb": statistics.median(wpriv),
            "worker_threads": statistics.median(wthreads),
            "worker_rss_kb": statistics.median(
                int(proc_status(p)["VmRSS"].split()[0]) for p in pids.values() if alive(p)
            ),
        }

    return run_app(ctx, face, n, "0", one)


def sc_status(ctx, face, n, reps):
    """The control socket's `status` of a master with n running workers:
    the round trip of one request on an open connection, until the whole
    reply (all n workers, as JSON) is read."""
    path = os.path.join(ctx.tmp, f"ctl{App.counter + 1}.sock")

    def one(app):
        app.wait_started(startup_timeout(n, "0"))
        settle(0.5)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rb")
        samples, size = [], 0
        for _ in range(reps):
            t0 = now()
            s.sendall(b'{"cmd":"status"}\n')
            line = f.readline()
            samples.append((now() - t0) / 1e9)
            size = len(line)
            reply = json.loads(line)
            running = reply["status"]["services"][0]["running"]
            if running != n:
                raise ScenarioError(f"status says {running}/{n} running")
        s.close()
        return {"samples": samples, "reply_bytes": size}

    return run_app(ctx, face, n, "0", one, env={"COTYLEDON_CONTROL_SOCKET": path})


# ---------------------------------------------------------------- plan

MODES = {
    "quick": dict(
        startup_n=[1, 16, 128, 512],
        startup_reps={1: 3, 16: 3, 128: 3, 512: 2, 1000: 2},
        startup_default_max=128,  # larger N with the default interval: full mode
        spawn_n=[1, 16],
        stable_n=[1000],
        ref_stable_n=[],
        stable_extra_faces=False,  # Rust/C stability: full mode
        respawn_reps=8,
        respawn_big_n=1000,
        mass_reps=3,
        cold_reps=1,
        cold_window=1.0,
        reload_reps=8,
        stop_reps=4,
        storm_reps=2,
        status_reps=50,
        extra_faces_startup_default=False,
        extra_faces_info=False,  # Rust/C in info-only scenarios: full mode
        big_startup_n=[1000],  # wait_interval=0, every face but the reference
        huge_n=10000,  # Rust, C and the C floor only
        huge_startup_reps=1,
        huge_respawn_reps=8,
    ),
    "full": dict(
        startup_n=[1, 16, 128, 512],
        startup_reps={1: 7, 16: 7, 128: 7, 512: 5, 1000: 3, 2000: 3},
        startup_default_max=512,  # the reference crash-loops at 1000
        spawn_n=[1, 16],
        stable_n=[1000, 2000],
        ref_stable_n=[1000],
        respawn_reps=30,
        respawn_big_n=1000,
        mass_reps=7,
        cold_reps=3,
        reload_reps=30,
        stop_reps=10,
        storm_reps=5,
        status_reps=200,
        stable_extra_faces=True,
        cold_window=6.0,
        extra_faces_startup_default=True,
        extra_faces_info=True,
        big_startup_n=[1000, 2000],
        huge_n=10000,
        huge_startup_reps=3,
        huge_respawn_reps=30,
    ),
}

REF, OURS, FLOOR = "ref", "py", "floor"
#: The bare C fork supervisor (benches/profile/floor_app.c): the bound of
#: the Rust and C faces.
CFLOOR = "cfloor"
NATIVE = ("rust", "c", CFLOOR)

# The floor face (benches/floor_app.py) has no limiter, no default reload
# and no wait_interval: it runs only where it does what the others do.
FLOOR_KEYS = ("startup_n1_wi0", "startup_n16_wi0", "startup_n128_wi0", "startup_n512_wi0",
              "startup_n1000_wi0", "startup_n2000_wi0", "stable_n1000",
              "respawn_n16_wi0", "mass_respawn_64", "reload_64", "stop_", "footprint_64")
CFLOOR_KEYS = FLOOR_KEYS + ("big_", "respawn_n1000_wi0")


def face_runs(face: str, key: str) -> bool:
    keys = {FLOOR: FLOOR_KEYS, CFLOOR: CFLOOR_KEYS}.get(face)
    if keys is None:
        return True
    return any(key == k or (k.endswith("_") and key.startswith(k)) for k in keys)


def plan(mode: str, faces: list[str]):
    """Yields (key, title, face, thunk, target) in run order."""
    m = MODES[mode]
    extra = [f for f in faces if f not in (REF, OURS)]
    main = [f for f in (REF, OURS) if f in faces]
    for wait in ("0", "default"):
        for n in m["startup_n"]:
            if wait == "default" and n > m["startup_default_max"]:
                continue
            if n > 512 and wait == "0":
                continue  # 1000+ is the stability scenario
            fs = main + (extra if wait == "0" or m["extra_faces_startup_default"] else [])
            wi = "0" if wait == "0" else "default (0.01)"
            target = ("ratio", 1 / 5) if wait == "0" and n in (128, 512) else None
            for f in fs:
                yield (
                    f"startup_n{n}_wi{wait}",
                    f"start-up N={n}, wait_interval={wi}",
                    f,
                    lambda ctx, f=f, n=n, wait=wait: sc_startup(ctx, f, n, wait, m["startup_reps"][n]),
                    target,
                )
    for n in m["big_startup_n"]:
        # The reference crash-loops at N >= 1000: not run.
        target = ("big_startup", (0.5, 0.6)) if n == 1000 else ("flat", ("startup_n128_wi0", 1.5))
        for f in faces:
            if f == REF:
                continue
            yield (
                f"startup_n{n}_wi0",
                f"start-up N={n}, wait_interval=0",
                f,
                lambda ctx, f=f, n=n: sc_startup(ctx, f, n, "0", m["startup_reps"][n]),
                target,
            )
    # mp_context=spawn: each worker a fresh interpreter (the Python faces).
    for n in m["spawn_n"]:
        for f in main:
            yield (
                f"startup_spawn_n{n}",
                f"start-up N={n}, mp_context=spawn, wait_interval=0",
                f,
                lambda ctx, f=f, n=n: sc_startup(
                    ctx, f, n, "0", m["startup_reps"][n], env={"BENCH_MP_CONTEXT": "spawn"}
                ),
                None,
            )
    for n in m["stable_n"]:
        for f in faces:
            if f == REF and n not in m["ref_stable_n"]:
                continue
            if f not in (REF, OURS, FLOOR) and not m["stable_extra_faces"]:
                continue
            yield (
                f"stable_n{n}",
                f"start-up N={n} (wait_interval=0), all alive after 10 s",
                f,
                lambda ctx, f=f, n=n: sc_stability(ctx, f, n),
                ("stable", None),
            )
    for f in faces:
        yield (
            "respawn_n16_wi0",
            "respawn, 1 of 16 (wait_interval=0)",
            f,
            lambda ctx, f=f: sc_respawn(ctx, f, 16, "0", m["respawn_reps"]),
            ("ratio", 1 / 8),
        )
    for f in faces if m["extra_faces_info"] else main:
        yield (
            "respawn_n16_widefault",
            "respawn, 1 of 16 (default wait_interval)",
            f,
            lambda ctx, f=f: sc_respawn(ctx, f, 16, "default", m["respawn_reps"]),
            None,
        )
    big = m["respawn_big_n"]
    for f in faces:
        if f == REF:
            continue
        yield (
            f"respawn_n{big}_wi0",
            f"respawn, 1 of {big} (wait_interval=0)",
            f,
            lambda ctx, f=f: sc_respawn(ctx, f, big, "0", m["respawn_reps"]),
            ("scale", 1.5),
        )
    for f in faces:
        yield (
            "mass_respawn_64",
            "mass respawn, 64 SIGKILLed, limiter clear",
            f,
            lambda ctx, f=f: sc_mass_respawn(ctx, f, 64, m["mass_reps"]),
            None,
        )
    for f in faces:
        yield (
            "mass_respawn_64_cold",
            "mass respawn cold (after start-up): first back",
            f,
            lambda ctx, f=f: sc_mass_respawn_cold(ctx, f, 64, m["cold_reps"], m["cold_window"]),
            None,
        )
    for f in faces:
        yield (
            "reload_64",
            "reload fan-out, 64: all reload() called",
            f,
            lambda ctx, f=f: sc_reload(ctx, f, 64, m["reload_reps"], True),
            ("ratio", 1 / 3),
        )
    for f in faces:
        yield (
            "reload_restart_64",
            "default reload, 64: all restarted, in run()",
            f,
            lambda ctx, f=f: sc_reload(ctx, f, 64, max(3, m["reload_reps"] // 2), False),
            None,
        )
    for kind, title in (
        ("term", "graceful stop, 64 (SIGTERM)"),
        ("int", "SIGINT fast exit, 64: all gone"),
        ("kill", "master SIGKILL, 64: all workers gone"),
    ):
        for f in faces:
            yield (
                f"stop_{kind}_64",
                title,
                f,
                lambda ctx, f=f, kind=kind: sc_stop(ctx, f, 64, m["stop_reps"], kind),
                ("ratio", 1 / 3),
            )
    for f in faces:
        yield (
            "storm_16",
            "signal storm: 500 SIGHUPs, 16 workers: last acted on",
            f,
            lambda ctx, f=f: sc_storm(ctx, f, 16, m["storm_reps"]),
            ("storm", None),
        )
    for f in faces:
        if f in (REF, FLOOR):
            continue  # no control socket there
        yield (
            "status_1000",
            "control socket status, 1000 workers: one round trip",
            f,
            lambda ctx, f=f: sc_status(ctx, f, 1000, m["status_reps"]),
            ("abs", 0.005),
        )
    huge = m["huge_n"]
    for f in faces:
        if f not in NATIVE:
            continue
        yield (
            f"big_startup_n{huge}",
            f"start-up N={huge} (wait_interval=0), Rust and C faces",
            f,
            lambda ctx, f=f: sc_startup(ctx, f, huge, "0", m["huge_startup_reps"]),
            None,
        )
        yield (
            f"big_stable_n{huge}",
            f"start-up N={huge} (wait_interval=0), all alive after 10 s",
            f,
            lambda ctx, f=f: sc_stability(ctx, f, huge),
            None,
        )
        yield (
            f"big_respawn_n{huge}",
            f"respawn, 1 of {huge} (wait_interval=0)",
            f,
            lambda ctx, f=f: sc_respawn(ctx, f, huge, "0", m["huge_respawn_reps"]),
            None,
        )
    for f in faces:
        yield (
            "footprint_64",
            "footprint, 64 idle workers",
            f,
            lambda ctx, f=f: sc_footprint(ctx, f, 64),
            ("footprint", None),
        )


# ---------------------------------------------------------------- report


def p95(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def summarize(entry):
    s = entry.get("samples") or []
    if s:
        entry["median"] = statistics.median(s)
        entry["p95"] = p95(s)
    return entry


def fmt_t(v):
    if v is None:
        return "-"
    if v >= 1:
        return f"{v:.2f} s"
    return f"{v * 1000:.1f} ms" if v >= 0.001 else f"{v * 1e6:.0f} us"


def fmt_entry(e):
    if e is None:
        return "-"
    if "error" in e and "median" not in e:
        return "FAILED"
    if "median" not in e:
        return "-"
    return f"{fmt_t(e['median'])} / {fmt_t(e['p95'])}"


def judge(key, target, results):
    """Returns (ratio text, target text, verdict) for the Python face."""
    r = results[key]
    ref, ours = r.get(REF), r.get(OURS)
    ratio = None
    if ref and ours and "median" in ref and "median" in ours and ref["median"] > 0:
        ratio = ours["median"] / ref["median"]
    rtext = f"{ratio:.3f}" if ratio is not None else "-"
    if target is None:
        return rtext, "", ""
    kind, val = target
    if kind == "ratio":
        if ratio is None:
            return rtext, f"<= {val:.3g}", "n/a"
        verdict = "PASS" if ratio <= val else "FAIL"
        floor = r.get(FLOOR)
        if verdict == "FAIL" and floor and "median" in floor and ref["median"] > 0:
            floor_ratio = floor["median"] / ref["median"]
            if floor_ratio > val:
                # Even the pure-Python floor misses it: out of reach of any
                # engine whose workers are forked CPython processes, here.
                verdict = f"FAIL (floor {floor_ratio:.2f})"
        return rtext, f"<= {val:.3g}", verdict
    if kind == "stable":
        if not ours:
            return rtext, "all alive, 0 respawns", "n/a"
        return rtext, "all alive, 0 respawns", "PASS" if ours.get("stable") else "FAIL"
    if kind == "scale":
        small = results.get("respawn_n16_wi0", {}).get(OURS)
        if not (ours and small and "median" in ours and "median" in small):
            return "-", f"<= {val}x N=16", "n/a"
        x = ours["median"] / small["median"]
        return f"{x:.2f}x N=16", f"<= {val}x N=16", "PASS" if x <= val else "FAIL"
    if kind == "abs":
        # Our faces alone: each face's median against the bound.
        verdicts = [
            f"{f} {'PASS' if e['median'] <= val else 'FAIL'}"
            for f, e in sorted(r.items())
            if isinstance(e, dict) and "median" in e
        ]
        return "-", f"<= {val * 1e3:g} ms", ", ".join(verdicts) or "n/a"
    if kind == "big_startup":
        limit, floor_max = val
        floor = r.get(FLOOR)
        if not (ours and "median" in ours):
            return "-", f"<= {limit} s, <= {floor_max}x floor", "n/a"
        x = ours["median"] / floor["median"] if floor and "median" in floor else None
        ok = ours["median"] <= limit and x is not None and x <= floor_max
        xt = f"{x:.2f}x floor" if x is not None else "-"
        return xt, f"<= {limit} s, <= {floor_max}x floor", "PASS" if ok else "FAIL"
    if kind == "flat":
        base_key, bound = val
        base = results.get(base_key, {}).get(OURS)
        if not (ours and base and "median" in ours and "median" in base):
            return "-", f"per worker <= {bound}x {base_key}", "n/a"
        n, n0 = key_n(key), key_n(base_key)
        x = (ours["median"] / n) / (base["median"] / n0)
        return (f"{x:.2f}x per worker", f"per worker <= {bound}x N={n0}",
                "PASS" if x <= bound else "FAIL")
    if kind == "storm":
        if not ours:
            return rtext, "last acted on", "n/a"
        return rtext, "last acted on", "PASS" if ours.get("acted_on_last") else "FAIL"
    return rtext, "", ""


def key_n(key: str) -> int:
    """The N of a scenario key (startup_n128_wi0 -> 128)."""
    return int(key.split("_n", 1)[1].split("_")[0])


# Issue 16: each event against the floor measured in the same run, the
# Python face against the CPython floor (benches/floor_app.py), the Rust
# and C faces against the bare C supervisor (benches/profile/floor_app.c).
# (key, bound for the Python face or None, bound for Rust and C or None)
FLOOR_BOUNDS = (
    ("startup_n16_wi0", None, 1.2),
    ("startup_n128_wi0", 1.0, 1.2),
    ("startup_n512_wi0", None, 1.2),
    ("startup_n1000_wi0", 0.6, 1.2),
    ("startup_n2000_wi0", None, 1.2),
    ("respawn_n16_wi0", 1.0, 1.2),
    ("respawn_n1000_wi0", None, 1.2),
    ("mass_respawn_64", None, 1.2),
    ("reload_64", 1.0, 1.2),
    ("stop_term_64", 1.3, 1.2),
    ("stop_int_64", None, 1.2),
    ("stop_kill_64", 1.3, 1.2),
    ("big_startup_n10000", None, 1.2),
    ("big_respawn_n10000", None, 1.2),
)


def floor_rows(results, titles):
    """Rows: scenario, face, median, floor, floor median, ratio, bound,
    verdict."""
    rows = []
    for key, py_bound, native_bound in FLOOR_BOUNDS:
        r = results.get(key)
        if not r:
            continue
        for face, floor, bound in ((OURS, FLOOR, py_bound), ("rust", CFLOOR, native_bound),
                                   ("c", CFLOOR, native_bound)):
            e, fl = r.get(face) or {}, r.get(floor) or {}
            if "median" not in e or "median" not in fl:
                continue
            x = e["median"] / fl["median"]
            verdict = "" if bound is None else ("PASS" if x <= bound else "FAIL")
            rows.append([titles.get(key, key), face, fmt_t(e["median"]), floor,
                         fmt_t(fl["median"]), f"{x:.2f}", "" if bound is None else f"<= {bound}",
                         verdict])
    return rows


def scale_rows(results):
    """Per-worker start-up and respawn against N, and the memory of 1000
    and 10,000 idle workers."""
    rows = []
    for face in (OURS, FLOOR, "rust", "c", CFLOOR):
        per = []
        for key in ("startup_n16_wi0", "startup_n128_wi0", "startup_n512_wi0",
                    "startup_n1000_wi0", "startup_n2000_wi0", "big_startup_n10000"):
            e = (results.get(key) or {}).get(face) or {}
            if "median" in e:
                per.append((key_n(key), e["median"] / key_n(key)))
        if len(per) >= 2:
            base = dict(per).get(128)
            cells = ", ".join(f"N={n}: {fmt_t(v)}" for n, v in per)
            top_n, top = per[-1]
            x = top / base if base else None
            bound = 1.5
            verdict = "" if x is None else ("PASS" if x <= bound else "FAIL")
            rows.append(["start-up per worker", face, cells,
                         "-" if x is None else f"N={top_n} {x:.2f}x N=128",
                         f"<= {bound}x N=128", verdict])
        small = ((results.get("respawn_n16_wi0") or {}).get(face) or {}).get("median")
        for key in ("respawn_n1000_wi0", "big_respawn_n10000"):
            big = ((results.get(key) or {}).get(face) or {}).get("median")
            if small and big:
                x = big / small
                rows.append([f"respawn, N={key_n(key)} against N=16", face,
                             f"{fmt_t(small)} -> {fmt_t(big)}", f"{x:.2f}x", "<= 1.5x",
                             "PASS" if x <= 1.5 else "FAIL"])
        for key in ("stable_n1000", "stable_n2000", "big_stable_n10000"):
            e = (results.get(key) or {}).get(face) or {}
            if "workers_pss_kb" in e:
                n = key_n(key)
                rows.append([f"{n} idle workers: PSS of all / private per worker", face,
                             f"{e['workers_pss_kb'] / 1024:.1f} MiB / "
                             f"{e.get('worker_private_median_kb')} kB",
                             f"stable: {e.get('stable')}", "all alive, 0 respawns",
                             "PASS" if e.get("stable") else "FAIL"])
    return rows


def render_rows(head, rows):
    """A plain-text table; the Markdown one is derived from it (two
    columns are set apart by " | ")."""
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    lines = [" | ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def markdown_rows(head, rows):
    if not rows:
        return ""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


FLOOR_HEAD = ["scenario", "face", "median", "floor", "floor median", "ratio", "bound", "verdict"]
SCALE_HEAD = ["measure", "face", "values", "ratio", "bound", "verdict"]


def footprint_rows(results):
    r = results.get("footprint_64", {})
    ref, ours = r.get(REF) or {}, r.get(OURS) or {}
    rows = []

    def cell(e, k):
        return "-" if k not in e else str(e[k])

    checks = [
        ("master threads", "master_threads", lambda o, f: o == 1, "= 1"),
        ("master fds", "master_fds", lambda o, f: o <= 64, "<= 64 (1 per worker)"),
        ("master CPU over 5 s idle (s)", "master_cpu_s", lambda o, f: o == 0, "= 0"),
        ("master RSS (kB)", "master_rss_kb", lambda o, f: f is not None and o <= f, "<= reference"),
        ("master private (kB)", "master_private_kb", None, ""),
        ("worker private, median (kB)", "worker_private_kb", lambda o, f: o <= 1024,
         "<= 1024 (1.0 MiB)"),
        ("worker RSS, median (kB)", "worker_rss_kb", None, ""),
        ("worker threads, median", "worker_threads", None, ""),
    ]
    for title, k, ok, tgt in checks:
        verdict = ""
        if ok is not None and k in ours:
            verdict = "PASS" if ok(ours[k], ref.get(k)) else "FAIL"
        others = "  ".join(f"{f}={cell(r.get(f) or {}, k)}" for f in r if f not in (REF, OURS))
        rows.append((f"footprint: {title}", cell(ref, k), cell(ours, k), "", tgt, verdict, others))
    return rows


def render(results, titles, targets, faces):
    extra = [f for f in faces if f not in (REF, OURS)]
    head = ["scenario", "reference med / p95", "ours (py) med / p95", "ratio", "target", "verdict"]
    head += [
        "CPython floor med / p95 (ratio)" if f == FLOOR
        else "C floor med / p95 (ratio)" if f == CFLOOR
        else f"ours ({f}) med / p95 (ratio)"
        for f in extra
    ]
    rows = []
    for key in titles:
        if key == "footprint_64":
            for fr in footprint_rows(results):
                rows.append(list(fr[:6]) + [fr[6]] + [""] * (len(extra) - 1 if extra else 0))
            continue
        r = results[key]
        ratio, tgt, verdict = judge(key, targets.get(key), results)
        row = [titles[key], fmt_entry(r.get(REF)), fmt_entry(r.get(OURS)), ratio, tgt, verdict]
        for f in extra:
            cell = fmt_entry(r.get(f))
            e, ref = r.get(f) or {}, r.get(REF) or {}
            if "median" in e and "median" in ref and ref["median"] > 0:
                cell += f" ({e['median'] / ref['median']:.3f})"
            row.append(cell)
        rows.append(row)
    return render_rows(head, rows)


def render_markdown(results, titles, targets, faces):
    text = render(results, titles, targets, faces).splitlines()
    out = []
    for i, line in enumerate(text):
        if i == 1:
            cols = line.count("-+-") + 1
            out.append("|" + "|".join(["---"] * cols) + "|")
        else:
            out.append("| " + " | ".join(c.strip() for c in line.split(" | ")) + " |")
    return "\n".join(out)


def machine_info():
    info = {"kernel": platform.release(), "python": sys.version.split()[0], "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    info["loadavg_start"] = os.getloadavg()
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    return info


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--face", action="append", default=[], help="NAME=command line")
    ap.add_argument("--out", help="JSON output file")
    ap.add_argument("--only", help="comma-separated scenario key prefixes")
    args = ap.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: PR_SET_CHILD_SUBREAPER failed", file=sys.stderr)
    sys.setswitchinterval(0.0005)

    faces = {}
    for spec in args.face:
        name, _, cmd = spec.partition("=")
        faces[name] = shlex.split(cmd)
    if not faces:
        ap.error("at least one --face")
    tmp = tempfile.mkdtemp(prefix="cotybench-")
    app_log = os.path.join(tmp, "apps.log")
    ctx = Context(faces, tmp, app_log)
    info = machine_info()
    info["faces"] = {k: " ".join(v) for k, v in faces.items()}
    info["mode"] = args.mode

    results: dict[str, dict] = {}
    titles: dict[str, str] = {}
    targets: dict[str, object] = {}
    only = args.only.split(",") if args.only else None
    started = time.monotonic()
    for key, title, face, thunk, target in plan(args.mode, list(faces)):
        if only and not any(key.startswith(o) for o in only):
            continue
        if not face_runs(face, key):
            continue
        titles[key] = title
        targets[key] = target
        t = time.monotonic()
        try:
            entry = thunk(ctx)
        except ScenarioError as e:
            entry = {"samples": [], "error": str(e)}
        except Exception as e:  # noqa: BLE001 - keep going, report it
            entry = {"samples": [], "error": f"{type(e).__name__}: {e}"}
        summarize(entry)
        entry["wall_s"] = round(time.monotonic() - t, 2)
        results.setdefault(key, {})[face] = entry
        note = f"  ERROR: {entry['error']}" if "error" in entry else ""
        print(f"[{time.monotonic() - started:6.1f}s] {key:<24} {face:<5} {fmt_entry(entry)}{note}",
              file=sys.stderr, flush=True)
    info["loadavg_end"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - started, 1)

    table = render(results, titles, targets, list(faces))
    print()
    print(f"cotyledon benchmarks ({args.mode} mode, {info['duration_s']} s; medians / p95; "
          f"ratio = ours (py) / reference)")
    print(f"machine: {info.get('cpu', '?')}, {info['cpus']} CPUs, kernel {info['kernel']}, "
          f"load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    print(table)
    frows, srows = floor_rows(results, titles), scale_rows(results)
    if frows:
        print("\nagainst the floors, same run (issue 16)")
        print(render_rows(FLOOR_HEAD, frows))
    if srows:
        print("\nscaling and memory (issue 16)")
        print(render_rows(SCALE_HEAD, srows))
    verdicts = {}
    for key in titles:
        if key != "footprint_64":
            verdicts[key] = judge(key, targets.get(key), results)[2]
    for row in footprint_rows(results) if "footprint_64" in titles else []:
        verdicts[row[0]] = row[5]
    out = {
        "machine": info,
        "results": results,
        "titles": titles,
        "verdicts": verdicts,
        "markdown": render_markdown(results, titles, targets, list(faces)),
        "floor_markdown": markdown_rows(FLOOR_HEAD, frows),
        "scale_markdown": markdown_rows(SCALE_HEAD, srows),
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nJSON: {args.out}")
    print(f"application output: {app_log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
