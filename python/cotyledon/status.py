"""What a running master says about itself: :py:meth:`ServiceManager.status`.

The same schema as the Rust ``cotyledon::status::Status``, the C face's
JSON and the control socket's ``status`` reply. Times are wall-clock
seconds since the Unix epoch.

Example::

    status = manager.status()
    for service in status.services:
        print(service.name, f"{service.running}/{service.workers}")
"""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid

__all__ = [
    "BackoffStatus",
    "Counters",
    "GiveUpStatus",
    "LastExit",
    "LimiterStatus",
    "PolicyStatus",
    "ServiceStatus",
    "Status",
    "StopStatus",
    "WorkerStatus",
]


@dataclasses.dataclass(frozen=True)
class LastExit:
    """How a worker id's previous process ended.

    ``kind`` is ``"exit"`` (``code`` set), ``"signal"`` (``signal`` and
    ``name`` set), ``"deadline"`` (the master's graceful deadline ended it)
    or ``"lost"`` (another waiter took its status).
    """

    kind: str
    code: int | None = None
    signal: int | None = None
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """One worker id of a service (``pid`` is None while it waits to respawn)."""

    worker_id: int
    pid: int | None
    started_at: float | None
    restarts: int
    last_exit: LastExit | None
    stopping: bool
    #: Its service's restart policy does not start it again.
    finished: bool = False
    #: While a backoff holds its respawn back: when it is due (Unix seconds).
    restart_at: float | None = None
    #: Its exits that failed and counted for the restart policy.
    failures: int = 0


@dataclasses.dataclass(frozen=True)
class Counters:
    """Counters of one service since ``run()`` started."""

    starts: int
    exits_clean: int
    exits_error: int
    exits_signal: int
    restarts: int
    limiter_waits: int
    reloads: int
    #: Exits that failed and counted for the restart policy.
    failures: int = 0
    #: Respawns the service's backoff held back.
    backoff_waits: int = 0


@dataclasses.dataclass(frozen=True)
class BackoffStatus:
    """A service's backoff, in seconds (see :py:class:`cotyledon.Backoff`)."""

    base: float
    max: float
    jitter: float
    stable: float


@dataclasses.dataclass(frozen=True)
class GiveUpStatus:
    """A service's give-up rule (see :py:class:`cotyledon.GiveUp`)."""

    failures: int
    window: float


@dataclasses.dataclass(frozen=True)
class PolicyStatus:
    """A service's restart policy (the arguments of
    :py:meth:`ServiceManager.add`): ``restart`` is ``"always"``,
    ``"on-failure"`` or ``"never"``."""

    restart: str = "always"
    stop_on_exit: bool = False
    backoff: BackoffStatus | None = None
    give_up: GiveUpStatus | None = None


@dataclasses.dataclass(frozen=True)
class StopStatus:
    """A restart policy stopped the manager: why, and the status
    :py:meth:`ServiceManager.run` exits with."""

    status: int
    reason: str


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """One service: its wanted count, running workers and counters."""

    id: int
    name: str
    workers: int
    running: int
    worker_list: list[WorkerStatus]
    counters: Counters
    #: The ``uuid.UUID`` that :py:meth:`ServiceManager.add` returned (the
    #: Python face's id; ``id`` is the engine's).
    service_id: uuid.UUID | None = None
    #: Its restart policy.
    policy: PolicyStatus = dataclasses.field(default_factory=PolicyStatus)


@dataclasses.dataclass(frozen=True)
class LimiterStatus:
    """The fork-rate limiter: whether it holds a fork back, until when."""

    waiting: bool
    until: float | None


@dataclasses.dataclass(frozen=True)
class Status:
    """The whole picture of a master.

    ``state`` is one of ``"starting"``, ``"running"``, ``"reloading"``,
    ``"stopping"``.
    """

    pid: int
    state: str
    started_at: float
    services: list[ServiceStatus]
    limiter: LimiterStatus
    #: The pid of the init the manager split off at creation (PID 1 in a
    #: container; see ``ServiceManager(init=...)``), or None.
    init_pid: int | None = None
    #: Set once a service's restart policy stopped the manager.
    stopped_by: StopStatus | None = None

    @property
    def healthy(self) -> bool:
        """Every wanted worker runs; neither stopping nor held back."""
        if self.state == "stopping" or self.limiter.waiting:
            return False
        for service in self.services:
            up = {
                w.worker_id
                for w in service.worker_list
                if w.finished or (w.pid is not None and not w.stopping)
            }
            if any(i not in up for i in range(max(service.workers, 0))):
                return False
        return True

    @classmethod
    def from_json(cls, text: str) -> Status:
        """Parse the engine's JSON (``cotyledon-ctl status --json``)."""
        return _status(json.loads(text))


def _status(d: dict[str, typing.Any]) -> Status:
    return Status(
        pid=d["pid"],
        state=d["state"],
        started_at=d["started_at"],
        services=[_service(s) for s in d["services"]],
        limiter=LimiterStatus(**d["limiter"]),
        init_pid=d.get("init_pid"),
        stopped_by=StopStatus(**d["stopped_by"]) if d.get("stopped_by") else None,
    )


def _service(d: dict[str, typing.Any]) -> ServiceStatus:
    return ServiceStatus(
        id=d["id"],
        name=d["name"],
        workers=d["workers"],
        running=d["running"],
        worker_list=[_worker(w) for w in d["worker_list"]],
        counters=Counters(**d["counters"]),
        service_id=uuid.UUID(d["key"]) if d.get("key") else None,
        policy=_policy(d.get("policy") or {}),
    )


def _policy(d: dict[str, typing.Any]) -> PolicyStatus:
    backoff = d.get("backoff")
    give_up = d.get("give_up")
    return PolicyStatus(
        restart=d.get("restart", "always"),
        stop_on_exit=d.get("stop_on_exit", False),
        backoff=BackoffStatus(**backoff) if backoff else None,
        give_up=GiveUpStatus(**give_up) if give_up else None,
    )


def _worker(d: dict[str, typing.Any]) -> WorkerStatus:
    last = d.get("last_exit")
    return WorkerStatus(
        worker_id=d["worker_id"],
        pid=d["pid"],
        started_at=d["started_at"],
        restarts=d["restarts"],
        last_exit=LastExit(**last) if last else None,
        stopping=d["stopping"],
        finished=d.get("finished", False),
        restart_at=d.get("restart_at"),
        failures=d.get("failures", 0),
    )
