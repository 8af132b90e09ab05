"""The application's hooks, as the engine calls them.

``ServiceManager.register_hooks`` registers each hook with the engine as a
hook of its own: the engine keeps the one list, in the order hooks were
added, and skips the remaining hooks of an event after a failure. A hook
that raises is logged here, as Cotyledon logs it (``Exception raised during
<name> hooks`` on ``cotyledon._utils``, with the traceback); the engine is
told it failed and logs nothing more.
"""

from __future__ import annotations

import typing
import uuid

from cotyledon import _utils
from cotyledon import types as t


def call(name: str, hook: typing.Callable[..., typing.Any], *args: typing.Any) -> bool:
    """Call ``hook(*args)``; False when it raised (logged)."""
    return _utils.run_hook(name, hook, *args)


def dead_worker(hook: typing.Callable[..., typing.Any], key: str | None, worker_id: int, exit_code: int) -> bool:
    """A dead-worker hook, given the service's ``uuid.UUID``."""
    service_id = t.ServiceId(uuid.UUID(key)) if key else None
    return call("dead_worker", hook, service_id, t.WorkerId(worker_id), exit_code)


def new_worker(
    hook: typing.Callable[..., typing.Any], key: str | None, worker_id: int, service: typing.Any  # noqa: ANN401
) -> bool:
    """A new-worker hook, in the new worker, given the service object."""
    service_id = t.ServiceId(uuid.UUID(key)) if key else None
    return call("new_worker", hook, service_id, t.WorkerId(worker_id), service)
