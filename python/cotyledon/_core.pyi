"""Type stubs of the compiled engine module ``cotyledon._core``."""

import os
from typing import Any, Optional, Union

from typing_extensions import Self, final

__all__ = [
    "SYSTEMD_VARS",
    "Engine",
    "__version__",
    "announce_restart",
    "ctl_main",
    "forked_by_application",
    "reset_log_cache",
]
__version__: str
#: systemd's variables for the main process, which no worker inherits.
SYSTEMD_VARS: list[str]

_Path = Union[str, "os.PathLike[str]"]

@final
class Engine:
    """The Rust engine behind ``cotyledon.ServiceManager``."""

    @property
    def graceful_shutdown_timeout(self) -> float: ...
    @graceful_shutdown_timeout.setter
    def graceful_shutdown_timeout(self, value: float) -> None: ...
    def __new__(
        cls,
        wait_interval: float = 0.01,
        graceful_shutdown_timeout: float = 60.0,
        *,
        control_socket: Optional[_Path] = None,
        metrics_file: Optional[_Path] = None,
        metrics_interval: float = 15.0,
        init: Optional[bool] = None,
        kill_grace: float = 0.5,
        gc_freeze: bool = False,
        worker: bool = False,
    ) -> Self:
        """Create the core manager.

        ``control_socket``: the UNIX socket the master serves while ``run()``
        runs (else ``$COTYLEDON_CONTROL_SOCKET``, if set); ``metrics_file``:
        the Prometheus textfile written every ``metrics_interval`` seconds
        (else ``$COTYLEDON_METRICS_FILE``, if set). ``init``: split off a
        minimal init that reaps orphans (``None``: only as PID 1, or as
        ``$COTYLEDON_INIT`` says; ``True``: always; ``False``: never); when
        it splits, this returns in the new process, the master, only.
        ``kill_grace``: seconds between the fast exit's SIGINT and SIGKILL
        to what is left. ``gc_freeze``: ``gc.freeze()`` before each fork of
        a worker and ``gc.unfreeze()`` after it in the master, unless the
        application froze objects itself. Raises ``ValueError`` for an empty path, an
        interval that is not positive and finite, a grace that is negative
        or not finite, or an invalid ``$COTYLEDON_INIT``. ``worker=True``:
        the engine of a worker started in a fresh interpreter (see
        ``run_worker``): no new session, no init.
        """
    def add(self, name: str, workers: int, key: str, type_name: str) -> int: ...
    def reconfigure(self, key: str, workers: int, type_name: str) -> None: ...
    def set_policy(
        self,
        key: str,
        restart: str,
        stop_on_exit: bool,
        backoff: Optional[tuple[float, float, float, float]] = None,
        give_up: Optional[tuple[int, float]] = None,
    ) -> None: ...
    def workers(self, key: str) -> int: ...
    def add_hook(self, event: str, hook: Any) -> None: ...
    def status_json(self) -> str: ...
    def shutdown(self) -> None: ...
    def reset_fork_limiter(self) -> None: ...
    def wakeup_fd(self) -> int: ...
    def run(self, runtime: Any) -> int: ...
    def set_exec(self, key: str) -> None:
        """Start the workers of the service known as ``key`` in fresh
        interpreters (``spawn``, ``forkserver``): the engine forks each one
        as any worker, then the child calls ``runtime.exec_worker(key,
        identity)``, which executes a new interpreter. Before ``run()``."""
    def run_worker(self, identity: str, runtime: Any) -> None:
        """In a fresh interpreter a worker was started in: run it as the
        worker ``identity`` (the engine's text) names, with the engine's
        worker protocol. Never returns once the worker runs; raises
        ``ValueError`` for an identity that cannot be used."""

def ctl_main(args: list[str]) -> int:
    """Run ``cotyledon-ctl`` with ``args`` (without the program name).

    The engine's own command-line client of the control socket: it writes
    to file descriptors 1 and 2 (not ``sys.stdout``/``sys.stderr``), with
    the GIL released while it waits on the socket (5 s at most), and
    returns the exit status: 0 success, 1 error (or unhealthy with
    ``status --check``), 2 usage error, 3 no master at the socket.
    """

def reset_log_cache() -> None: ...
def announce_restart() -> None:
    """In a worker: the coming exit is a restart (the default reload)."""

def forked_by_application() -> bool:
    """In a new process, from an at-fork hook: whether the application
    forked it from a master or worker whose engine runs (not the engine
    forking a worker)."""
