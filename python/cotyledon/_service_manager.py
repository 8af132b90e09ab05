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
"""ServiceManager: the master process, driving the Rust engine."""

from __future__ import annotations

import _thread
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import typing
import uuid

from cotyledon import _core
from cotyledon import _forking
from cotyledon import _logrecords
from cotyledon import _policy
from cotyledon import _running
from cotyledon import _service_worker
from cotyledon import _spawning
from cotyledon import _utils
from cotyledon import types as t

if typing.TYPE_CHECKING:
    from cotyledon import _service
    from cotyledon import status as status_mod

LOG = logging.getLogger(__name__)

OnTerminateHook = typing.Callable[[], None]
OnReloadHook = typing.Callable[[], None]
OnNewWorkerHook = _service_worker.OnNewWorkerHook
OnDeadWorkerHook = typing.Callable[[t.ServiceId, t.WorkerId, int], None]

# Signals the engine reacts to in the master. Until run() hands them to the
# engine they are recorded (and replayed when the engine starts), so that a
# SIGTERM arriving between the manager's creation and run() is not lost.
_RECORDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The engine reaps its workers itself: no Python SIGCHLD handler meanwhile.
_DEFAULTED_SIGNALS = (signal.SIGCHLD,)
# The longest path a UNIX socket address holds (sun_path less its NUL).
_SUN_PATH_MAX = 107


class ServiceManager:
    """Starts, supervises and stops the worker processes of services.

    One per application: create it, :py:meth:`add` services, optionally
    :py:meth:`register_hooks`, then :py:meth:`run`, the application's main
    loop, which ends by raising ``SystemExit(0)`` after a graceful shutdown
    (SIGTERM or :py:meth:`shutdown`). SIGINT exits at once with status 1;
    SIGHUP reloads the workers.

    Usage::

        class MyService(cotyledon.Service):
            def __init__(self, worker_id, conf):
                super().__init__(worker_id)
                self.conf = conf

            def run(self):
                do_my_job(self.conf)

        manager = cotyledon.ServiceManager()
        manager.add(MyService, workers=4, args=({"x": 1},))
        manager.run()

    Operators: a master started with ``control_socket=PATH`` (or, with no
    change to the application, with ``COTYLEDON_CONTROL_SOCKET=PATH`` in its
    environment) answers ``cotyledon-ctl --socket PATH COMMAND`` (also
    ``python -m cotyledon ctl ...``): ``status [--json] [--check]``,
    ``reload`` (as SIGHUP), ``scale SERVICE N``, ``restart SERVICE WORKER``,
    ``stop`` (as SIGTERM: :py:meth:`run` then raises ``SystemExit(0)``) and
    ``metrics`` (Prometheus text). SERVICE is a service's name (its class's
    ``name``) or the engine's numeric id (``ServiceStatus.id``). With
    ``metrics_file=PATH`` (or ``COTYLEDON_METRICS_FILE``) the same metrics
    are written to that file every ``metrics_interval`` seconds. In the
    program itself, :py:meth:`status` gives what ``status`` shows.

    Containers: a master started as PID 1 (``docker run`` without
    ``--init``) splits off a minimal init when the manager is created, which
    reaps the orphans the workers leave and passes signals on to the
    master; ``init=`` (or ``COTYLEDON_INIT``) forces it on or off.
    """

    #: Only one manager per process: set when one is created.
    _process_runner_already_created = False

    def __init__(
        self,
        wait_interval: float = 0.01,
        graceful_shutdown_timeout: int = 60,
        mp_context: multiprocessing.context.BaseContext | None = None,
        *,
        control_socket: str | os.PathLike[str] | None = None,
        metrics_file: str | os.PathLike[str] | None = None,
        metrics_interval: float = 15.0,
        init: bool | None = None,
        kill_grace: float = 0.5,
        gc_freeze: bool = True,
    ) -> None:
        """Create the manager.

        :param wait_interval: time between two worker starts (seconds); a
            lone respawn long after the last start is not delayed
        :param graceful_shutdown_timeout: how long a graceful shutdown may
            take, in the master and in each worker (0 = wait forever)
        :param mp_context: a ``multiprocessing`` context or a start method's
            name (``"fork"``, ``"spawn"``, ``"forkserver"``); None: the
            default context, as Cotyledon (``fork`` up to CPython 3.13,
            ``forkserver`` from 3.14, or what
            ``multiprocessing.set_start_method()`` chose, read when
            :py:meth:`run` starts). With ``spawn`` or ``forkserver`` each
            worker is a fresh interpreter: the engine forks it, as every
            worker, and the child executes ``sys.executable`` at once; the
            service, its args and kwargs and the ``on_new_worker`` hooks
            are pickled to it (see :py:meth:`add`). No ``multiprocessing``
            process or fork server is involved: the master reaps every
            worker itself. Kept as ``self.mp_context`` (a context).
        :param control_socket: keyword only; path (``str`` or
            ``os.PathLike``) of a UNIX socket the master serves while
            :py:meth:`run` runs, for ``cotyledon-ctl`` (mode 0600, only the
            master's user may connect; removed when run() ends). When
            None, the ``COTYLEDON_CONTROL_SOCKET`` environment variable
            gives the path, if set; else no socket.
        :param metrics_file: keyword only; path of a file the master writes
            its Prometheus metrics to, atomically, every
            ``metrics_interval`` (for node_exporter's textfile collector).
            When None, ``COTYLEDON_METRICS_FILE`` gives the path, if set.
        :param metrics_interval: keyword only; seconds between two writes
            of the metrics file (a positive number; 0.1 at least in effect;
            default 15)
        :param init: keyword only; whether to split off a minimal init
            that reaps orphans, for a master run as PID 1 in a container
            (``docker run`` without ``--init``). ``None`` (default): only
            when this process is PID 1, unless the ``COTYLEDON_INIT``
            environment variable (``auto``, ``always``, ``never``) says
            otherwise; ``True``: always (the init is then a child
            subreaper); ``False``: never. When it splits, this constructor
            forks: the original process stays PID 1 as the init (it reaps
            every orphan, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT,
            SIGUSR1, SIGUSR2 and SIGWINCH to the master, and exits with the
            master's status, 128 + the signal number if a signal killed
            it), and the constructor returns in the new process, the
            master. Create the manager before starting threads: threads
            started earlier stay behind in the init.
        :param kill_grace: keyword only; seconds the master waits for its
            workers after the SIGINT of a fast exit (SIGINT to the master,
            or ``graceful_shutdown_timeout`` exceeded) before it sends
            SIGKILL to the workers still alive, every process they started
            and the rest of its process group, and reaps them before it
            exits with status 1 (a non-negative number; 0 kills at once;
            default 0.5)
        :param gc_freeze: keyword only; whether the master freezes the
            garbage collector's objects around each fork of a worker
            (default True): ``gc.freeze()`` just before the fork and
            ``gc.unfreeze()`` just after it, in the master. A worker then
            starts with everything it inherited in the collector's
            permanent generation (``gc.get_freeze_count()``), which its own
            collections never walk: a full collection in a worker no longer
            writes to, and so copies, every page of the master's heap (one
            ``gc.collect()`` in a new worker: 4.2 MB of private memory
            instead of 1.9 MB, see BENCHMARKS.md). What a worker inherited
            is then never collected in the worker (garbage the master had
            not yet collected at the fork stays there, as it would in a
            worker that never runs a full collection); its own objects are.
            The master's objects go back to its oldest generation after
            each fork and are collected as before. An application that
            called ``gc.freeze()`` itself keeps its own freeze: the master
            leaves the collector alone then. False: Cotyledon's behaviour.
        :raises TypeError: a path that is not a ``str`` or ``os.PathLike``,
            an ``mp_context`` that is neither a context nor a name,
            an interval or a grace that is not a number, ``init`` not a bool
            or None, ``gc_freeze`` not a bool
        :raises ValueError: an empty path, a path with a NUL character, a
            control socket path too long for a UNIX socket, an interval not
            positive and finite, a grace negative or not finite, a
            ``COTYLEDON_INIT`` value other than ``auto``, ``always`` or
            ``never``

        The socket and the file are opt-in: without them (and without the
        environment variables) the manager behaves as Cotyledon's. See
        "Operators" in the class's documentation.
        """
        control_socket = _utils.check_path(control_socket, "control_socket", max_len=_SUN_PATH_MAX)
        metrics_file = _utils.check_path(metrics_file, "metrics_file")
        metrics_interval = _utils.check_interval(metrics_interval, "metrics_interval")
        if init is not None and not isinstance(init, bool):
            msg = f"'init' must be a bool or None, not: {init!r} ({type(init).__name__})"
            raise TypeError(msg)
        kill_grace = _utils.check_interval(kill_grace, "kill_grace", zero_ok=True)
        if not isinstance(gc_freeze, bool):
            msg = f"'gc_freeze' must be a bool, not: {gc_freeze!r} ({type(gc_freeze).__name__})"
            raise TypeError(msg)
        mp_context = _spawning.context_of(mp_context)
        if ServiceManager._process_runner_already_created:
            msg = "Only one instance of ServiceManager per application is allowed"
            raise RuntimeError(msg)
        ServiceManager._process_runner_already_created = True

        self._wait_interval = wait_interval
        try:
            # As PID 1 (or with init=True) this forks: it returns in the
            # master only.
            self._core = _core.Engine(
                float(wait_interval or 0),
                float(graceful_shutdown_timeout or 0),
                control_socket=control_socket,
                metrics_file=metrics_file,
                metrics_interval=metrics_interval,
                init=init,
                kill_grace=kill_grace,
                gc_freeze=gc_freeze,
            )
        except BaseException:
            ServiceManager._process_runner_already_created = False
            raise
        self.__graceful_shutdown_timeout = graceful_shutdown_timeout
        # The engine's creation may have forked (as PID 1): this is the master.
        self._master_pid = os.getpid()
        # What builds each service's workers; the engine holds the ids,
        # counts and hooks.
        self._services: dict[t.ServiceId, _service_worker.ServiceConfig] = {}
        # The on_new_worker hooks, for workers started in a new interpreter.
        self._new_worker_hooks: list[OnNewWorkerHook] = []
        # "spawn" or "forkserver" once run() started them so, else None.
        self._exec_method: str | None = None
        self._forktimes: list[float] = []
        self._pending_signals: list[int] = []
        self._engine_started = False
        self._lock = threading.Lock()

        _utils.set_process_title(
            f"{_utils.get_process_name()}: master process [{' '.join(sys.argv)}]",
        )
        self.mp_context: multiprocessing.context.BaseContext = (
            mp_context or multiprocessing.get_context()
        )
        if threading.current_thread() is threading.main_thread():
            for sig in _RECORDED_SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, self._record_signal)

    # -- configuration ---------------------------------------------------

    @property
    def _graceful_shutdown_timeout(self) -> int:
        return self.__graceful_shutdown_timeout

    @_graceful_shutdown_timeout.setter
    def _graceful_shutdown_timeout(self, value: int) -> None:
        self.__graceful_shutdown_timeout = value
        core = self.__dict__.get("_core")
        if core is not None:
            core.graceful_shutdown_timeout = float(value or 0)

    def register_hooks(
        self,
        on_terminate: OnTerminateHook | None = None,
        on_reload: OnReloadHook | None = None,
        on_new_worker: OnNewWorkerHook | None = None,
        on_dead_worker: OnDeadWorkerHook | None = None,
    ) -> None:
        """Add hooks; callable many times, hooks run in the order added.

        :param on_terminate: ``f()``, in the master on SIGTERM
        :param on_reload: ``f()``, in the master on SIGHUP
        :param on_new_worker: ``f(service_id, worker_id, service)``, in each
            new worker before its service runs (pickled to the worker with
            ``spawn`` or ``forkserver``)
        :param on_dead_worker: ``f(service_id, worker_id, exit_code)``, in
            the master for each worker that ended

        If a hook raises, the exception is logged and the remaining hooks of
        that event are skipped.

        :raises TypeError: a hook that is not callable; with ``spawn`` or
            ``forkserver``, an ``on_new_worker`` hook that does not pickle
            (the message names it)
        """
        given = (
            ("terminate", "on_terminate", on_terminate),
            ("reload", "on_reload", on_reload),
            ("new_worker", "on_new_worker", on_new_worker),
            ("dead_worker", "on_dead_worker", on_dead_worker),
        )
        for _event, arg_name, hook in given:
            if hook is not None:
                _utils.check_callable(hook, arg_name)
        if on_new_worker is not None:
            if _spawning.fresh_interpreters(self.mp_context):
                _spawning.check_pickles(on_new_worker, "on_new_worker hook", self.mp_context)
            self._new_worker_hooks.append(on_new_worker)
        for event, _arg_name, hook in given:
            if hook is not None:
                # Each one a hook of the engine's, in the order added.
                self._core.add_hook(event, hook)

    def add(
        self,
        service: typing.Callable[..., _service.Service],
        workers: int = 1,
        args: typing.Any = None,  # noqa: ANN401
        kwargs: typing.Any = None,  # noqa: ANN401
        *,
        restart: str = "always",
        stop_on_exit: bool = False,
        backoff: _policy.Backoff | None = None,
        give_up: _policy.GiveUp | None = None,
    ) -> t.ServiceId:
        """Add a service run by ``workers`` worker processes.

        :param service: callable returning a :py:class:`Service` (usually
            the subclass itself), called in each worker as
            ``service(worker_id, *args, **kwargs)``
        :param workers: number of worker processes
        :param args: extra positional arguments for ``service``
        :param kwargs: extra keyword arguments for ``service``
        :param restart: keyword only; when a worker that ended is started
            again: ``"always"`` (the default, Cotyledon's behaviour),
            ``"on-failure"`` (a worker that exits with status 0 is not
            respawned; its id shows as finished in :py:meth:`status`) or
            ``"never"``
        :param stop_on_exit: keyword only; stop the manager (gracefully)
            once the service has no worker left: :py:meth:`run` then raises
            ``SystemExit`` with the status of the last of the service's
            final exits that failed (128 + N for signal N), or 0
        :param backoff: keyword only; a :py:class:`cotyledon.Backoff`:
            exponential backoff of each worker id's respawns; it replaces
            the fork-rate limiter on this service
        :param give_up: keyword only; a :py:class:`cotyledon.GiveUp`:
            that many failures within its window stop the manager, and
            :py:meth:`run` raises ``SystemExit(125)``
        :return: the service id (a ``uuid.UUID``)
        :raises TypeError: a service that is not callable, or a policy
            argument of the wrong type; with ``spawn`` or ``forkserver``, a
            service, an arg or a kwarg that does not pickle (the message
            names it)
        :raises ValueError: a worker count below 1, or a ``restart`` other
            than ``"always"``, ``"on-failure"`` or ``"never"``

        Exits the engine caused (a scale-down, ``cotyledon-ctl restart``, a
        stop) and restarts a worker announced (the default
        :py:meth:`Service.reload`) are restarts whatever the policy says:
        only the other exits count for it, its backoff and its give-up.
        """
        _utils.check_callable(service, "service")
        _utils.check_workers_type(workers, 1)
        _policy.check(restart, stop_on_exit, backoff, give_up)
        service_id = t.ServiceId(uuid.uuid4())
        config = _service_worker.ServiceConfig(service_id, service, workers, args, kwargs)
        if _spawning.fresh_interpreters(self.mp_context):
            _spawning.check_config(config, self.mp_context)
        with self._lock:
            # The engine checks the count and keeps the service under this
            # id, as its key.
            key = str(service_id)
            self._core.add(config.name, workers, key, type(workers).__name__)
            if not _policy.is_default(restart, stop_on_exit, backoff, give_up):
                self._core.set_policy(
                    key,
                    restart,
                    stop_on_exit,
                    None
                    if backoff is None
                    else (backoff.base, backoff.max, backoff.jitter, backoff.stable),
                    None if give_up is None else (give_up.failures, give_up.window),
                )
            self._services[service_id] = config
        return service_id

    def reconfigure(self, service_id: t.ServiceId, workers: int) -> None:
        """Change the number of workers of a service.

        Missing workers are started, workers whose id is at or above the new
        count are stopped (SIGTERM).

        :raises ValueError: unknown service id, or ``workers`` below
            ``1 - current workers``
        """
        key = str(service_id)
        try:
            current = self._core.workers(key)
        except ValueError:
            msg = f"{service_id} service id doesn't exists"
            raise ValueError(msg) from None
        _utils.check_workers_type(workers, 1 - current)
        self._core.reconfigure(key, workers, type(workers).__name__)
        config = self._services.get(service_id)
        if config is not None:
            config.workers = workers
        self._forktimes = []

    # -- running -----------------------------------------------------------

    def run(self) -> None:
        """Start the workers and supervise them until shutdown.

        Must be called from the main thread. With ``spawn`` or
        ``forkserver`` (see ``mp_context``), raises ``TypeError`` first when
        a service, its args or kwargs, or an ``on_new_worker`` hook does not
        pickle. Ends a graceful shutdown by
        raising ``SystemExit(0)``. When a service's restart policy stops the
        manager (``stop_on_exit``, ``give_up``: see :py:meth:`add`), the stop
        is as graceful and ends by raising ``SystemExit`` with the policy's
        status: 125 for a give-up, the last failure's for a stop on exit.
        """
        if threading.current_thread() is not threading.main_thread():
            msg = "ServiceManager.run() must be called from the main thread"
            raise RuntimeError(msg)
        self._start_in_fresh_interpreters()
        saved: dict[int, typing.Any] = {}
        for sig in (*_RECORDED_SIGNALS, *_DEFAULTED_SIGNALS):
            saved[sig] = signal.getsignal(sig)
        for sig in _RECORDED_SIGNALS:
            signal.signal(sig, self._record_signal)
        for sig in _DEFAULTED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        old_wakeup_fd = signal.set_wakeup_fd(
            self._core.wakeup_fd(), warn_on_full_buffer=False
        )
        _logrecords.warm()
        try:
            status = self._core.run(_Runtime(self))
        finally:
            self._engine_started = False
            signal.set_wakeup_fd(old_wakeup_fd)
            for signum, handler in saved.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        raise SystemExit(status)

    def _start_in_fresh_interpreters(self) -> None:
        # Checked again: an object may have changed since add().
        method = _spawning.fresh_interpreters(self.mp_context)
        if method is None or self._exec_method is not None:
            return
        with self._lock:
            for config in self._services.values():
                _spawning.check_config(config, self.mp_context)
            for hook in self._new_worker_hooks:
                _spawning.check_pickles(hook, "on_new_worker hook", self.mp_context)
            _spawning.prepare_master()
            for service_id in self._services:
                self._core.set_exec(str(service_id))
            self._exec_method = method

    def status(self) -> status_mod.Status:
        """What the master is doing: its state, each service and worker
        (pid, start time, restarts, last exit), the fork-rate limiter.

        Callable from any thread and from hooks, before and during
        :py:meth:`run`::

            for service in manager.status().services:
                print(service.name, f"{service.running}/{service.workers}")
        """
        # Imported here: dataclasses (and what it imports) would add about
        # 1 MB to every master and worker that never asks for a status.
        from cotyledon import status as status_mod  # noqa: PLC0415

        return status_mod.Status.from_json(self._core.status_json())

    @property
    def _running_services(
        self,
    ) -> typing.DefaultDict[t.ServiceId, dict[_running.WorkerProcess, _running.WorkerInfo]]:
        """``{service_id: {process: WorkerInfo(worker_id, started_event)}}``
        of the workers running now (as Cotyledon's attribute, which subclasses read in hooks):
        each process has ``pid``, ``is_alive()``, ``terminate()``,
        ``join(timeout)`` and ``exitcode``. Built from the engine's status
        each time it is read; ``join()`` sees the end without reaping."""
        return _running.running_services(self._core)

    def shutdown(self) -> None:
        """Shut down gracefully, as SIGTERM does. Returns at once; callable
        from hooks and other threads, and harmless once run() has ended.

        Called in a worker (where the manager is a copy), it stops that
        worker as Cotyledon does: the worker gets SIGTERM, terminates
        gracefully and is respawned; the call does not return.
        """
        self._core.shutdown()
        if os.getpid() != self._master_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait()

    def _record_signal(self, sig: int, frame: typing.Any) -> None:  # noqa: ANN401
        # Before the engine runs: remember the signal for it. Once it runs,
        # the engine has handled the signal already.
        if not self._engine_started:
            self._pending_signals.append(sig)

    def _slowdown_respawn_if_needed(self) -> None:
        """The fork-rate limiter, as a standalone method.

        The engine applies the same rule itself before each fork, without
        blocking the master; this method is kept for code that calls or
        replaces it. When it is replaced, the replacement is called before
        each fork and the engine's own limiter is disabled.
        """
        expected = sum(max(self._core.workers(str(sid)), 0) for sid in self._services)
        if len(self._forktimes) > expected:
            if time.time() - self._forktimes[0] < expected:
                LOG.info("Forking too fast, sleeping")
                time.sleep(5)
            self._forktimes.pop(0)
        else:
            time.sleep(self._wait_interval)
        self._forktimes.append(time.time())

    def _slowdown_replaced(self) -> bool:
        if "_slowdown_respawn_if_needed" in vars(self):
            return True
        method = getattr(type(self), "_slowdown_respawn_if_needed", None)
        return method is not _ORIGINAL_SLOWDOWN


_ORIGINAL_SLOWDOWN = ServiceManager._slowdown_respawn_if_needed


class _Runtime:
    """What the engine calls back during ``run()`` (in the master and, after
    a fork, in the new worker)."""

    def __init__(self, manager: ServiceManager) -> None:
        self._manager = manager
        self._custom_slowdown = manager._slowdown_replaced()

    # master, first wakeup of the loop: the engine's handlers are in place.
    def started(self, told_systemd: bool) -> None:  # noqa: FBT001
        if told_systemd:
            # READY=1 went: as Cotyledon, no NOTIFY_SOCKET in os.environ.
            os.environ.pop("NOTIFY_SOCKET", None)
        manager = self._manager
        manager._engine_started = True
        pending, manager._pending_signals = manager._pending_signals, []
        for sig in dict.fromkeys(pending):
            os.kill(os.getpid(), sig)

    # -- forking (master) ---------------------------------------------------

    def fork_refs(self) -> tuple[typing.Any, typing.Any] | None:
        # Once per run(): what the engine needs to fork without calling
        # prefork() while the master has no other thread (it then takes
        # the worker's number from ``multiprocessing.process`` and flushes
        # ``sys.stdout``/``sys.stderr`` itself, running no Python frame).
        # None: a replaced _slowdown_respawn_if_needed must run each time.
        if self._custom_slowdown:
            return None
        return (_thread._count, multiprocessing.process)  # noqa: SLF001

    def prefork(self) -> typing.Any:  # noqa: ANN401
        # Before a fork, in the master, when the engine's own fast path
        # (see fork_refs) does not apply. Each page touched here is copied
        # again after every fork (copy-on-write).
        if self._custom_slowdown:
            self._manager._slowdown_respawn_if_needed()
            self._manager._core.reset_fork_limiter()
        identity = _forking.next_process_identity()
        # Threads started from Python (threading or _thread) still alive;
        # the main thread is not counted.
        if _thread._count():  # noqa: SLF001
            return (_forking.prepare(), identity, os.getpid(), True)
        # Alone: no lock can be held by anyone else; flushing stdio is
        # enough.
        _forking.flush_stdio()
        return ((), identity, os.getpid(), False)

    def postfork_parent(self, state: typing.Any) -> None:  # noqa: ANN401
        _forking.in_parent(state[0])

    def postfork_child(self, state: typing.Any) -> None:  # noqa: ANN401
        held, identity, parent_pid, threaded = state
        if held or threaded:
            _forking.in_child(held, threaded)
        _forking.become_worker_process(self._manager.mp_context, identity, parent_pid)

    # -- worker side ------------------------------------------------------

    def build(self, key: str, worker_id: int) -> typing.Any:  # noqa: ANN401
        config = self._manager._services[t.ServiceId(uuid.UUID(key))]
        return _service_worker.built_for_engine(config, t.WorkerId(worker_id))

    def exec_worker(self, key: str, identity: str) -> None:
        # In the forked child of a spawn/forkserver service: becomes a
        # fresh interpreter (returns only when it could not).
        manager = self._manager
        config = manager._services[t.ServiceId(uuid.UUID(key))]
        _spawning.exec_worker(
            config,
            identity,
            manager._new_worker_hooks,
            manager._exec_method or "spawn",
        )

    def signal_handler_failed(self, exc: BaseException) -> int:
        return _service_worker.report_crash(exc)

    def flush(self, code: int) -> None:
        _forking.flush()
