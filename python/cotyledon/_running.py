# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""``ServiceManager._running_services``: the live workers, Process-like.

Applications that subclass the manager (kuryr-daemon, zun's CNI daemon)
walk ``self._running_services[service_id]`` in a hook and call
``terminate()`` and ``join()`` on each worker. The engine keeps no Python
object per worker: the mapping is built when it is read, from the
engine's status. A handle never reaps its worker (the engine must still
account for it): it sees the end through a pidfd (readable once the
process has exited) or, without pidfds, the process's ``/proc`` state,
and reads the exit status with ``waitid(WNOWAIT)``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import time
import typing
import uuid

from cotyledon import types as t

_WNOWAIT_FLAGS = os.WEXITED | os.WNOHANG | os.WNOWAIT


class _Started:
    """A worker's ``started_event``: a listed worker has started."""

    def is_set(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> bool:  # noqa: ARG002
        return True


class WorkerInfo(typing.NamedTuple):
    """What the mapping holds for each process (as in Cotyledon)."""

    worker_id: t.WorkerId
    started_event: typing.Any


def _proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # noqa: PTH123
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :][:1].decode()


class WorkerProcess:
    """A running worker, seen from the master as ``multiprocessing`` shows
    a child: ``pid``, ``is_alive()``, ``terminate()``, ``kill()``,
    ``join(timeout)``, ``exitcode``, ``name``."""

    def __init__(self, engine: typing.Any, key: str, worker_id: int, pid: int) -> None:  # noqa: ANN401
        self._engine = engine
        self._key = key
        self.worker_id = worker_id
        self.pid = pid
        self.name = f"worker({worker_id})"
        self._exitcode: int | None = None
        # Opened at the first question (reading the mapping opens no fd).
        self._pidfd: int | None = None
        self._pidfd_tried = False

    def __del__(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        state = "started" if self._exitcode is None else f"stopped exitcode={self._exitcode}"
        return f"<WorkerProcess name={self.name!r} pid={self.pid} {state}>"

    @property
    def ident(self) -> int:
        return self.pid

    def _fd(self) -> int | None:
        """A pidfd of the worker, or None (no pidfds, or it is gone)."""
        if not self._pidfd_tried:
            self._pidfd_tried = True
            pidfd_open = getattr(os, "pidfd_open", None)
            if pidfd_open is not None:
                with contextlib.suppress(OSError):
                    self._pidfd = pidfd_open(self.pid)
        return self._pidfd

    def _ended(self) -> bool:
        """Whether the worker has exited (a zombie or reaped), no reaping."""
        if self._exitcode is not None:
            return True
        fd = self._fd()
        if fd is not None:
            readable, _, _ = select.select([fd], [], [], 0)
            return bool(readable)
        state = _proc_state(self.pid)
        return state is None or state in "ZXx"

    def _wait(self, timeout: float | None) -> bool:
        """Waits up to ``timeout`` seconds (None: forever) for the end."""
        if self._ended():
            return True
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self._ended()
            if self._pidfd is not None:
                poller = select.poll()
                poller.register(self._pidfd, select.POLLIN)
                poller.poll(None if left is None else left * 1000)
            else:
                time.sleep(0.01 if left is None else min(0.01, left))
            if self._ended():
                return True

    def _read_exitcode(self) -> int | None:
        """The exit code of an ended worker, without reaping it."""
        try:
            info = os.waitid(os.P_PID, self.pid, _WNOWAIT_FLAGS)
        except ChildProcessError:
            info = None
        if info is not None:
            if info.si_code == os.CLD_EXITED:
                return info.si_status
            return -info.si_status
        # The engine reaped it already: its last exit, as it recorded it.
        return self._engine_exitcode()

    def _engine_exitcode(self) -> int | None:
        import json  # noqa: PLC0415 - only here: the master forks smaller without it

        data = json.loads(self._engine.status_json())
        for service in data.get("services", []):
            if service.get("key") != self._key:
                continue
            for worker in service.get("worker_list", []):
                if worker.get("worker_id") != self.worker_id:
                    continue
                last = worker.get("last_exit") or {}
                if last.get("code") is not None:
                    return int(last["code"])
                if last.get("signal") is not None:
                    return -int(last["signal"])
        return None

    @property
    def exitcode(self) -> int | None:
        """None while the worker runs; then its exit code (``-N`` when
        signal N killed it)."""
        if self._exitcode is None and self._ended():
            self._exitcode = self._read_exitcode()
        return self._exitcode

    def is_alive(self) -> bool:
        return not self._ended()

    def join(self, timeout: float | None = None) -> None:
        """Waits until the worker has exited, or ``timeout`` seconds."""
        if self._wait(timeout):
            _ = self.exitcode

    def terminate(self) -> None:
        """Sends SIGTERM to the worker (a graceful stop)."""
        self._send(signal.SIGTERM)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def _send(self, sig: int) -> None:
        if self._ended():
            return
        fd = self._fd()
        if fd is not None and hasattr(signal, "pidfd_send_signal"):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


def running_services(
    engine: typing.Any,  # noqa: ANN401
) -> collections.defaultdict[t.ServiceId, dict[WorkerProcess, WorkerInfo]]:
    """``{service_id: {process: WorkerInfo(worker_id, started_event)}}`` of
    the workers running now."""
    result: collections.defaultdict[t.ServiceId, dict[WorkerProcess, WorkerInfo]] = (
        collections.defaultdict(dict)
    )
    started = _Started()
    import json  # noqa: PLC0415 - only here: the master forks smaller without it

    data = json.loads(engine.status_json())
    for service in data.get("services", []):
        key = service.get("key")
        if key is None:
            continue
        service_id = t.ServiceId(uuid.UUID(str(key)))
        workers = result[service_id]
        for worker in service.get("worker_list", []):
            pid = worker.get("pid")
            if pid:
                wid = t.WorkerId(int(worker["worker_id"]))
                workers[WorkerProcess(engine, str(key), wid, int(pid))] = WorkerInfo(wid, started)
    return result
