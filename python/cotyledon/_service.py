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
"""The Service base class: what runs in each worker process."""

from __future__ import annotations

import os
import signal
import typing

from cotyledon import _core

if typing.TYPE_CHECKING:
    from cotyledon import types


class Service:
    """A long-running activity; one instance lives in each worker process.

    Subclass it and override any of :py:meth:`run`, :py:meth:`terminate` and
    :py:meth:`reload`. The instance is created in the worker, after the fork,
    with ``(worker_id, *args, **kwargs)`` as given to
    :py:meth:`ServiceManager.add`.

    Each of the three may be a coroutine function (``async def``). With an
    ``async def run()``, the worker runs one asyncio event loop, in run's
    thread, for the service: ``run()`` is its main task, and an async
    ``terminate()`` or ``reload()`` is scheduled on that loop (thread-safely)
    while a plain one runs in its thread, as usual. After ``terminate()`` the
    loop is shut down as ``asyncio.run()`` does: ``run()``, if still
    running, and the tasks left are cancelled, async generators closed, the
    default executor shut down, the loop closed; then the worker exits. All
    of it within the graceful shutdown timeout. A service whose ``run()`` is
    a plain function keeps its threads (an async ``terminate()`` or
    ``reload()`` of it runs on a loop of the callbacks thread).
    """

    #: Shown in process titles and log lines; defaults to the class name.
    name: typing.ClassVar[str | None] = None

    #: Seconds :py:meth:`terminate` may take before the worker is ended with
    #: status 1. ``None`` uses the manager's setting; ``0`` waits forever.
    graceful_shutdown_timeout: typing.ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: typing.Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name is None:
            cls.name = cls.__name__

    def __init__(self, worker_id: types.WorkerId) -> None:
        """Keep ``worker_id``: stable, 0 .. workers - 1, reused on respawn."""
        super().__init__()
        self.worker_id = worker_id

    def run(self) -> None | typing.Awaitable[None]:
        """The service's activity, started in its own thread (or, for an
        ``async def run()``, as the main task of the worker's event loop).

        Returning does not end the worker: it keeps waiting for signals.
        ``SystemExit`` ends the worker with its code; any other exception is
        logged and the worker exits with status 2.
        """

    def terminate(self) -> None | typing.Awaitable[None]:
        """Graceful stop, called in a thread on SIGTERM (an ``async def
        terminate()`` of an async service: on its event loop).

        Afterwards the worker exits with status 0, or with the code of a
        ``SystemExit`` raised here.
        """

    def reload(self) -> None | typing.Awaitable[None]:
        """Called in a thread on SIGHUP (an ``async def reload()`` of an
        async service: on its event loop).

        By default the worker restarts: it sends itself SIGTERM, ends
        gracefully and the manager starts a fresh one with the same id.
        SIGHUPs that arrive while it runs make it run once more when it
        returns (the last SIGHUP is always acted on); one that arrives
        during ``terminate()`` is ignored. The master is told that this
        exit is a restart: a service's restart policy (see
        :py:meth:`ServiceManager.add`) does not count it, and the worker
        is respawned even under ``restart="never"``.
        """
        _core.announce_restart()
        os.kill(os.getpid(), signal.SIGTERM)
