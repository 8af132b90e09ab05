"""Shared machinery of the scenario tests.

Every test drives real processes: a master started from tests/python/apps/
(or examples/) in its own session, whose log lines are read from a pipe with
deadlines. The pytest process is made a child subreaper so that workers
orphaned by a killed master are re-parented to it and reaped here (PID 1 of
this kind of machine does not reap, and a zombie looks alive to kill(pid, 0)).
A finalizer kills the whole process group of every application a test
started, so nothing is left behind even when a test fails.

Run against the reference implementation with
``COTYLEDON_TEST_AGAINST=reference``: tests marked ``ours_only`` (deliberate
improvements of ours, see the contract's **better** items) are then skipped.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Optional

import pytest

from subreaper import set_subreaper

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
REPO = os.path.dirname(os.path.dirname(HERE))

AGAINST_REFERENCE = os.environ.get("COTYLEDON_TEST_AGAINST") == "reference"

# Default deadline for any single awaited event.
DEADLINE = float(os.environ.get("COTYLEDON_TEST_DEADLINE", "15"))


# Process groups of the applications started by the tests (= master pids).
_APP_GROUPS: set[int] = set()
_APP_GROUPS_LOCK = threading.Lock()


def _set_child_subreaper() -> None:
    if not set_subreaper():  # pragma: no cover
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_stat(pid: int) -> Optional[tuple[str, int, int]]:
    """(state, ppid, pgrp) of pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def pid_alive(pid: int) -> bool:
    """True when pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[2] == pgid and st[0] != "Z":
                members.append(int(entry))
    return members


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root``, from each process's parent in
    /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def reap_orphans() -> None:
    """Reap zombies re-parented to us that belong to an application group.

    Only processes of the groups of applications we started are reaped, and
    never a group leader (the master, a direct child owned by its Popen),
    so the exit status of our own subprocesses is never stolen.
    """
    me = os.getpid()
    with _APP_GROUPS_LOCK:
        groups = set(_APP_GROUPS)
    if not groups:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        st = proc_stat(pid)
        if st is None or st[1] != me or st[0] != "Z":
            continue
        if st[2] in groups and pid not in groups:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _reaper_loop() -> None:
    while True:
        try:
            reap_orphans()
        except Exception:  # pragma: no cover - never let the thread die
            pass
        time.sleep(0.05)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ours_only(reason): a deliberate improvement over the reference "
        "(skipped when COTYLEDON_TEST_AGAINST=reference)",
    )
    _set_child_subreaper()
    threading.Thread(target=_reaper_loop, name="orphan-reaper", daemon=True).start()


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not AGAINST_REFERENCE:
        return
    for item in items:
        marker = item.get_closest_marker("ours_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (
                marker.args[0] if marker.args else "improvement over the reference"
            )
            item.add_marker(pytest.mark.skip(reason=f"ours only: {reason}"))


class TimeoutExpired(AssertionError):
    pass


class LineStream:
    """Lines of a pipe, read by a thread, awaited with deadlines."""

    def __init__(self, pipe, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.cursor = 0
        self.eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._read, args=(pipe,), name=f"read-{name}", daemon=True
        )
        self._thread.start()

    def _read(self, pipe) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def wait_eof(self, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutExpired(f"{self.name}: no EOF within {timeout}s")
                self._cond.wait(left)

    def find(
        self, pattern: str, start: int = 0, timeout: float = DEADLINE
    ) -> tuple[int, re.Match]:
        """Wait for the first line >= start matching pattern (re.search)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return i, m
                    i += 1
                if self.eof:
                    raise TimeoutExpired(
                        f"{self.name}: EOF without a line matching {pattern!r}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutExpired(
                        f"{self.name}: no line matching {pattern!r} within {timeout}s"
                    )
                self._cond.wait(left)

    def expect(self, pattern: str, timeout: float = DEADLINE) -> re.Match:
        """Wait for a line matching pattern after the cursor; move past it."""
        i, m = self.find(pattern, self.cursor, timeout)
        self.cursor = i + 1
        return m

    def wait_count(
        self, pattern: str, count: int, start: int = 0, timeout: float = DEADLINE
    ) -> list[re.Match]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in map(rx.search, self.lines[start:]) if m]
                if len(found) >= count:
                    return found[:count]
                if self.eof:
                    raise TimeoutExpired(
                        f"{self.name}: EOF with {len(found)}/{count} lines "
                        f"matching {pattern!r}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutExpired(
                        f"{self.name}: {len(found)}/{count} lines matching "
                        f"{pattern!r} within {timeout}s"
                    )
                self._cond.wait(left)

    def all(self, pattern: str, start: int = 0) -> list[re.Match]:
        rx = re.compile(pattern)
        with self._cond:
            return [m for m in map(rx.search, self.lines[start:]) if m]

    def index(self, pattern: str, start: int = 0) -> int:
        """Index of the first line matching pattern, already received."""
        rx = re.compile(pattern)
        with self._cond:
            for i in range(start, len(self.lines)):
                if rx.search(self.lines[i]):
                    return i
        raise AssertionError(f"{self.name}: no line matching {pattern!r}")

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


EV_RX = r"INFO:app:EV {event} (?P<fields>.*)$"


def parse_fields(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


class App:
    """A master process started in its own session, stdout/stderr piped."""

    def __init__(self, argv: list[str], env: Optional[dict] = None, cwd=None) -> None:
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        # Tests choose whether a master splits off an init (test_pid1.py).
        full_env.pop("COTYLEDON_INIT", None)
        # The apps run with Python's usual buffering whatever the caller's
        # shell sets: the buffered-output scenarios depend on it.
        full_env.pop("PYTHONUNBUFFERED", None)
        if env:
            full_env.update(env)
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=full_env,
            cwd=cwd,
        )
        self.pid = self.proc.pid
        with _APP_GROUPS_LOCK:
            _APP_GROUPS.add(self.pid)
        self.out = LineStream(self.proc.stdout, "stdout")
        self.err = LineStream(self.proc.stderr, "stderr")

    # -- structured events logged by tests/python/apps/app.py ----------------
    def event(
        self, event: str, timeout: float = DEADLINE, start: Optional[int] = None,
        **match: object
    ) -> dict[str, str]:
        """Wait for an app event whose fields include match; return fields.

        Searches from `start` (default: 0, i.e. the whole output)."""
        rx = EV_RX.format(event=re.escape(event))
        deadline = time.monotonic() + timeout
        i = 0 if start is None else start
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                i, m = self.out.find(rx, i, timeout=left)
            except TimeoutExpired:
                raise TimeoutExpired(
                    f"no event {event} {match} within {timeout}s"
                ) from None
            fields = parse_fields(m.group("fields"))
            fields["_index"] = str(i)
            if all(fields.get(k) == str(v) for k, v in match.items()):
                return fields
            i += 1

    def events(self, event: str, **match: object) -> list[dict[str, str]]:
        rx = EV_RX.format(event=re.escape(event))
        result = []
        with self.out._cond:
            lines = list(self.out.lines)
        for i, line in enumerate(lines):
            m = re.search(rx, line)
            if m:
                fields = parse_fields(m.group("fields"))
                fields["_index"] = str(i)
                if all(fields.get(k) == str(v) for k, v in match.items()):
                    result.append(fields)
        return result

    # -- process control ----------------------------------------------------
    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutExpired(f"master {self.pid} still running after {timeout}s") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def members(self) -> list[int]:
        return group_members(self.pid)

    def wait_group_gone(self, timeout: float = DEADLINE) -> None:
        """Wait until no live process of the app's process group remains."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.members()
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutExpired(f"processes still alive after {timeout}s: {left}")
            time.sleep(0.02)

    def kill_all(self) -> None:
        # Its descendants too, whatever their group: a master a wrapper
        # started (no exec) made a session of its own.
        for pid in descendants(self.pid):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        deadline = time.monotonic() + 5
        while self.members() and time.monotonic() < deadline:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            time.sleep(0.02)
        reap_orphans()

    def dump(self) -> str:
        return (
            f"--- {' '.join(self.argv)} (pid {self.pid}, rc {self.proc.poll()})\n"
            f"--- stdout:\n{self.out.text()}\n--- stderr:\n{self.err.text()}\n"
        )


def scenario_results(scenario: str) -> dict:
    """Runs ``app.py <scenario>``, a scenario that checks calls in-process
    and prints ``RESULTS <json>``; returns that dict."""
    import json  # noqa: PLC0415

    proc = subprocess.run(
        [sys.executable, os.path.join(APPS, "app.py"), scenario],
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stderr
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")][0]
    return json.loads(line[len("RESULTS ") :])


def wait_pids_gone(pids, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if pid_alive(int(p))]
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutExpired(f"pids still alive after {timeout}s: {left}")
        time.sleep(0.02)


# Syscall numbers of wait4 and waitid, by machine.
_WAIT_SYSCALLS = {"x86_64": {61, 247}, "aarch64": {260, 95}}


def _blocked_in_wait(pid: int, tid: int) -> bool:
    """Whether thread tid of pid is blocked in wait4/waitid (os.waitpid)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            nr = f.read().split()[0]
        with open(f"/proc/{pid}/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except (OSError, IndexError):
        return False
    known = _WAIT_SYSCALLS.get(os.uname().machine)
    if known is not None:
        return nr.isdigit() and int(nr) in known
    return wchan == "do_wait"


def wait_thread_in_waitpid(pid: int, timeout: float = DEADLINE) -> None:
    """Wait until a thread of pid other than its main one is blocked in
    waitpid (e.g. an application thread's os.waitpid(-1, 0))."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            tids = []
        if any(_blocked_in_wait(pid, t) for t in tids if t != pid):
            return
        if time.monotonic() > deadline:
            raise TimeoutExpired(f"no thread of {pid} blocked in waitpid after {timeout}s")
        time.sleep(0.005)


class Datagram:
    """One datagram to the notify socket: its ``KEY=value`` lines, when the
    kernel queued it (``at``, CLOCK_REALTIME seconds) and our
    CLOCK_MONOTONIC when we read it (``mono``)."""

    def __init__(self, text: str, at: float, mono: float) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.at = at
        self.mono = mono

    def value(self, key: str) -> Optional[str]:
        """The value of the first line ``key=value``, or None."""
        for line in self.lines:
            if line.startswith(key + "="):
                return line[len(key) + 1 :]
        return None

    def has(self, line: str) -> bool:
        """Whether the datagram has ``line`` (``KEY=value``), or a line
        starting with it when it ends with ``*``."""
        if line.endswith("*"):
            return any(l.startswith(line[:-1]) for l in self.lines)
        return line in self.lines

    def __repr__(self) -> str:
        return f"<{self.text!r} at {self.at:.3f}>"


class NotifySocket:
    """A datagram socket standing for systemd's notify socket: a path
    under ``tmp_path``, or an abstract name (``address`` is what goes in
    NOTIFY_SOCKET). A thread reads every datagram as soon as it arrives
    (the queue of a UNIX datagram socket is short, and a sender finding it
    full blocks) and keeps the kernel's arrival time (SO_TIMESTAMPNS)."""

    SO_TIMESTAMPNS = 35  # = SCM_TIMESTAMPNS; not exported by the socket module

    def __init__(self, kind: str, tmp_path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if kind == "path":
            self.address = self._bound = str(tmp_path / "notify.sock")
        else:
            name = f"cotyledon-test-{os.getpid()}-{time.monotonic_ns()}"
            self.address, self._bound = "@" + name, "\0" + name
        self.sock.bind(self._bound)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
        except OSError:  # pragma: no cover - then our own time of reading
            pass
        self.sock.settimeout(0.05)
        self.dgrams: list[Datagram] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except OSError:
                return
            mono = time.clock_gettime(time.CLOCK_MONOTONIC)
            at = time.time()
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == self.SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    at = sec + nsec / 1e9
            with self._cond:
                self.dgrams.append(Datagram(data.decode("utf-8", "replace"), at, mono))
                self._cond.notify_all()

    def close(self) -> None:
        self._closed = True
        self._thread.join(5)
        self.sock.close()

    def __getitem__(self, i: int) -> Datagram:
        with self._cond:
            return self.dgrams[i]

    def __len__(self) -> int:
        with self._cond:
            return len(self.dgrams)

    def last(self) -> int:
        """Index of the last datagram received so far (-1: none)."""
        return len(self) - 1

    def wait(self, line: str, after: int = -1, timeout: float = DEADLINE) -> int:
        """Index of the first datagram after ``after`` that has ``line``
        (see Datagram.has), waiting for it."""
        deadline = time.monotonic() + timeout
        i = after + 1
        with self._cond:
            while True:
                while i < len(self.dgrams):
                    if self.dgrams[i].has(line):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutExpired(
                        f"no datagram with {line!r} after #{after} within {timeout}s; "
                        f"the last ones: {self.dgrams[-12:]}"
                    )
                self._cond.wait(left)

    def flush(self) -> int:
        """Waits until every datagram sent so far was read (one of ours,
        sent now, comes after them); its index."""
        marker = f"X-TEST-FLUSH={time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(marker.encode(), self._bound)
        return self.wait(marker)

    def count(self, line: str, start: int = 0, end: Optional[int] = None) -> int:
        with self._cond:
            return sum(d.has(line) for d in self.dgrams[start:end])


@pytest.fixture
def notify(request, tmp_path) -> Iterator[NotifySocket]:
    """A NotifySocket; parametrize it indirectly with "path" (default) or
    "abstract"."""
    sock = NotifySocket(getattr(request, "param", "path"), tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids of processes a test learnt of that may leave the app's process
    group (a session of their own): SIGKILLed and reaped at the end, after
    the apps' groups (start_app depends on this fixture)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    for pid in pids:
        # re-parented to us (a subreaper) once their parent died
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)


@pytest.fixture
def start_app(request, strays) -> Iterator[Callable[..., App]]:  # noqa: ARG001 - strays go after the apps
    """start_app(scenario, *args, env=None) runs tests/python/apps/app.py."""
    apps: list[App] = []

    def start(*args: str, env: Optional[dict] = None, script: Optional[str] = None,
              cwd=None) -> App:
        script = script or os.path.join(APPS, "app.py")
        app = App([sys.executable, script, *map(str, args)], env=env, cwd=cwd)
        apps.append(app)
        return app

    yield start

    failed = getattr(request.node, "rep_call", None)
    for app in apps:
        app.kill_all()
        if failed is not None and failed.failed:
            print(app.dump())
    with _APP_GROUPS_LOCK:
        for app in apps:
            _APP_GROUPS.discard(app.pid)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
