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
"""The Python side of a worker process.

The engine's worker loop (signals, parent watch, timeouts, the log lines of
the ``cotyledon._service_worker`` logger) is in Rust; here the service is
built and its methods are called.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
import typing

# At module level, never in a function a new worker runs: each
# ``from package import module`` in a function runs importlib's Python
# code (``_handle_fromlist``) again, whose first calls in a worker write to
# pages of the interpreter's frozen code objects (copied in each worker).
from cotyledon import _forking
from cotyledon import _utils

if typing.TYPE_CHECKING:
    from cotyledon import _service
    from cotyledon import types as t

LOG = logging.getLogger(__name__)

OnNewWorkerHook = typing.Callable[["t.ServiceId", "t.WorkerId", "_service.Service"], None]


class ServiceConfig:
    """What ``ServiceManager.add()`` was given for one service."""

    def __init__(
        self,
        service_id: t.ServiceId,
        service: typing.Callable[..., _service.Service],
        workers: int,
        args: typing.Any,  # noqa: ANN401
        kwargs: typing.Any,  # noqa: ANN401
    ) -> None:
        self.service_id = service_id
        self.service = service
        self.workers = workers
        self.args = tuple(args) if args is not None else ()
        self.kwargs = dict(kwargs) if kwargs is not None else {}
        self.name = service_name(service)
        # Which of run/terminate/reload are coroutine functions: decided
        # here, in the master, once per service class (None: a factory
        # that is not a class, decided in each worker from what it built).
        self.async_methods: frozenset[str] | None = (
            async_methods(service) if isinstance(service, type) else None
        )

    def build(self, worker_id: t.WorkerId) -> _service.Service:
        """Create the service object of worker ``worker_id``."""
        return self.service(worker_id, *self.args, **self.kwargs)


def service_name(service: typing.Any) -> str:  # noqa: ANN401
    """The name a service factory gives its workers' titles and log lines."""
    name = getattr(service, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(getattr(service, "__name__", None) or type(service).__name__)


def report_crash(exc: BaseException) -> int:
    """A worker that could not start: print the traceback (as the
    ``multiprocessing`` bootstrap does) and give the exit status."""
    if isinstance(exc, SystemExit):
        return _utils.exit_code_of(exc)
    try:
        import multiprocessing  # noqa: PLC0415

        sys.stderr.write(f"Process {multiprocessing.current_process().name}:\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110
        pass
    return 1


def build(config: ServiceConfig, worker_id: t.WorkerId) -> _service.Service | int:
    """In a new worker: the service object, or an exit status (the
    engine then runs the new-worker hooks)."""
    try:
        service = config.build(worker_id)
        # In case a subclass did not call Service.__init__.
        service.worker_id = worker_id
        _utils.set_process_title(
            f"{_utils.get_process_name()}: {getattr(service, 'name', config.name)} worker({worker_id})",
        )
    except BaseException as exc:  # noqa: BLE001
        return report_crash(exc)
    return service


def built_for_engine(config: ServiceConfig, worker_id: t.WorkerId) -> typing.Any:  # noqa: ANN401
    """What the engine's ``runtime.build()`` returns in a new worker: an
    exit status (the service could not be built: reported already), or
    ``(service, caller, graceful_shutdown_timeout)``."""
    _forking.forget_systemd_environment()
    built = build(config, worker_id)
    if isinstance(built, int):
        _forking.flush()
        return built
    return (built, caller(config, built), graceful_shutdown_timeout(built))


# CO_COROUTINE of a code object's co_flags (inspect.CO_COROUTINE, without
# importing inspect into every master).
_CO_COROUTINE = 0x80


def is_coroutine_function(func: typing.Any) -> bool:  # noqa: ANN401
    """Whether ``func`` is an ``async def`` function (bound or not, possibly
    in ``functools.partial``), or marked as one by
    ``inspect.markcoroutinefunction``."""
    # The mark of inspect.markcoroutinefunction (3.12+): whoever used it
    # imported inspect.
    mark = getattr(sys.modules.get("inspect"), "_is_coroutine_mark", None)
    while True:
        if mark is not None and getattr(func, "_is_coroutine_marker", None) is mark:
            return True
        inner = getattr(func, "__func__", None)  # a method
        if inner is None:
            inner = getattr(func, "func", None) if isinstance(func, functools.partial) else None
        if inner is None:
            break
        func = inner
    code = getattr(func, "__code__", None)
    return code is not None and bool(getattr(code, "co_flags", 0) & _CO_COROUTINE)


def async_methods(service: typing.Any) -> frozenset[str]:  # noqa: ANN401
    """The methods among ``run``, ``terminate`` and ``reload`` of a service
    class (or object) that are coroutine functions."""
    return frozenset(
        m for m in ("run", "terminate", "reload") if is_coroutine_function(getattr(service, m, None))
    )


def caller(config: ServiceConfig, service: _service.Service) -> typing.Callable[[_service.Service, str], int | None]:
    """What the engine calls the service's methods with: ``call_service``
    for a plain service (nothing more per worker), an event loop's driver
    when some of them are coroutine functions."""
    methods = config.async_methods
    if methods is None:
        methods = async_methods(service)
    if not methods:
        return call_service
    from cotyledon import _asyncio_worker  # noqa: PLC0415

    return _asyncio_worker.AsyncCalls(methods)


def call_service(service: _service.Service, method: str) -> int | None:
    """Call ``service.<method>()``: None to keep going, or the exit status.

    ``SystemExit`` gives its code, as Python computes it; any other
    exception is logged (``Unhandled exception``, with traceback) and gives
    2. A ``sys.exit()`` with no code or a message from ``run()`` is logged
    at INFO with the status it gives: it is easily mistaken for a way to
    idle (the reference fails there with a ``TypeError`` and leaves the
    worker idle).
    """
    try:
        getattr(service, method)()
    except BaseException as exc:  # noqa: BLE001
        return failure_status(exc, method)
    return None


def failure_status(exc: BaseException, method: str) -> int:
    """The exit status of ``service.<method>()`` that raised ``exc`` (see
    :py:func:`call_service`)."""
    if isinstance(exc, SystemExit):
        code = _utils.exit_code_of(exc)
        if method == "run" and (exc.code is None or isinstance(exc.code, str)):
            LOG.info("run() exited the worker with sys.exit(%r): exit status %d", exc.code, code)
        return code
    _utils.log_unhandled_exception(exc)
    return 2


def graceful_shutdown_timeout(service: _service.Service) -> float | None:
    """The service's own graceful shutdown timeout (None: the manager's)."""
    value = getattr(service, "graceful_shutdown_timeout", None)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
