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
"""Services whose methods are coroutine functions (``async def``).

Imported only by the workers of such a service. The engine calls the
service's methods as for any other one: ``run`` on its run thread,
``terminate`` and ``reload`` on its callbacks thread, one at a time, with
the same graceful shutdown timeout. What differs is what those calls do:

- ``async def run()``: the run thread makes a new event loop, runs the
  coroutine on it and, if it returns, keeps the loop running, for the
  async ``terminate()`` and ``reload()``.
- ``async def terminate()`` / ``async def reload()``: submitted to that
  loop (``asyncio.run_coroutine_threadsafe``); the callbacks thread waits
  for the result. Plain ones run on the callbacks thread, as usual.
- After ``terminate()``, whichever kind, the loop is shut down as
  ``asyncio.run()`` does at its end: ``run()`` is cancelled if it is still
  running, so are the tasks left, async generators are closed, the default
  executor is shut down (its jobs finish) and the loop is closed; then the
  worker exits.
- A plain ``run()`` with an async ``terminate()`` or ``reload()``: these
  run on a loop of the callbacks thread's own, shut down after
  ``terminate()``.
"""

from __future__ import annotations

import asyncio
import threading
import typing

from cotyledon import _service_worker

if typing.TYPE_CHECKING:
    from cotyledon import _service


async def _guarded(service: _service.Service, method: str) -> int | None:
    """Await ``service.<method>()``: None, or the exit status (as
    ``call_service``). Exceptions are caught inside the task, before the
    loop sees them: a ``SystemExit`` would otherwise escape the loop."""
    try:
        await getattr(service, method)()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001
        return _service_worker.failure_status(exc, method)
    return None


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run()`` does with its loop at the end."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception during the shutdown of the service's loop",
                        "exception": task.exception(),
                        "task": task,
                    },
                )
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class AsyncCalls:
    """``call_service`` for one worker's service with coroutine methods."""

    def __init__(self, methods: frozenset[str]) -> None:
        self._methods = methods
        # The run thread's loop (async run) and its life.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[int | None] | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._finished = threading.Event()
        # The callbacks thread's own loop (plain run).
        self._own: asyncio.AbstractEventLoop | None = None

    def __call__(self, service: _service.Service, method: str) -> int | None:
        if method == "run":
            if "run" in self._methods:
                return self._run(service)
            return _service_worker.call_service(service, method)
        if "run" in self._methods:
            return self._on_run_loop(service, method)
        return self._on_own_loop(service, method)

    # -- async run: the run thread --------------------------------------

    def _run(self, service: _service.Service) -> int | None:
        loop = asyncio.new_event_loop()
        status: int | None = None
        try:
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._main = loop.create_task(_guarded(service, "run"))
            self._ready.set()
            try:
                status = loop.run_until_complete(self._main)
            except asyncio.CancelledError:
                status = None  # cancelled after terminate()
            else:
                # run() returned: the worker keeps going, its loop too,
                # until terminate() ends it.
                if status is None and not self._stopping:
                    loop.run_forever()
        finally:
            self._ready.set()
            try:
                _shut_down(loop)
            finally:
                self._finished.set()
        return status

    def _stop(self) -> None:
        # On the loop, after terminate().
        self._stopping = True
        if self._main is not None and not self._main.done():
            self._main.cancel()
        else:
            typing.cast("asyncio.AbstractEventLoop", self._loop).stop()

    def _on_run_loop(self, service: _service.Service, method: str) -> int | None:
        # The callbacks thread. A SIGTERM may come before the run thread
        # made its loop.
        self._ready.wait()
        loop = self._loop
        if loop is None or self._finished.is_set():
            # run() failed: the worker is exiting with its status.
            return None
        if method in self._methods:
            future = asyncio.run_coroutine_threadsafe(_guarded(service, method), loop)
            try:
                status = future.result()
            except asyncio.CancelledError:
                status = None  # the loop went down meanwhile
        else:
            status = _service_worker.call_service(service, method)
        if method == "terminate":
            try:
                loop.call_soon_threadsafe(self._stop)
            except RuntimeError:
                pass  # already closed
            self._finished.wait()
        return status

    # -- plain run: the callbacks thread's own loop ----------------------

    def _on_own_loop(self, service: _service.Service, method: str) -> int | None:
        if method not in self._methods:
            status = _service_worker.call_service(service, method)
        else:
            if self._own is None:
                self._own = asyncio.new_event_loop()
                asyncio.set_event_loop(self._own)
            status = self._own.run_until_complete(_guarded(service, method))
        if method == "terminate" and self._own is not None:
            _shut_down(self._own)
            self._own = None
        return status
