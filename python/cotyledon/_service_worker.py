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

import logging
import sys
import traceback
import typing

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


def call_service(service: _service.Service, method: str) -> int | None:
    """Call ``service.<method>()``: None to keep going, or the exit status.

    ``SystemExit`` gives its code; any other exception is logged
    (``Unhandled exception``, with traceback) and gives 2.
    """
    try:
        getattr(service, method)()
    except SystemExit as exc:
        return _utils.exit_code_of(exc)
    except BaseException:  # noqa: BLE001
        _utils.log_unhandled_exception()
        return 2
    return None


def graceful_shutdown_timeout(service: _service.Service) -> float | None:
    """The service's own graceful shutdown timeout (None: the manager's)."""
    value = getattr(service, "graceful_shutdown_timeout", None)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
