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
"""Workers in fresh interpreters: the ``spawn`` and ``forkserver`` start
methods.

The engine forks every worker at its one fork site. For a service whose
manager's context is ``spawn`` or ``forkserver``, the forked child does not
build the service: it writes what the worker needs (multiprocessing's own
preparation data, then the service's configuration, the ``on_new_worker``
hooks and the engine's worker identity) to a memfd, pickled as
``multiprocessing`` pickles a process, and executes ``sys.executable``
running :func:`main`. There the main module is imported as
``__mp_main__`` (``multiprocessing.spawn.prepare``), the payload is
unpickled, and the engine's worker protocol runs as in a forked worker
(``Engine.run_worker``). No ``multiprocessing`` process or fork server is
involved: the worker is the master's own child, which it reaps.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import typing

if typing.TYPE_CHECKING:
    from cotyledon import _service_worker

# The start methods whose workers are fresh interpreters.
FRESH = ("spawn", "forkserver")


def context_of(mp_context: typing.Any) -> typing.Any:  # noqa: ANN401
    """The ``multiprocessing`` context ``ServiceManager(mp_context=...)``
    names: a context as given, a start method's name as its context, None
    as None (the default context)."""
    if mp_context is None:
        return None
    if isinstance(mp_context, str):
        return multiprocessing.get_context(mp_context)
    if callable(getattr(mp_context, "get_start_method", None)):
        return mp_context
    msg = (
        "'mp_context' must be a multiprocessing context or a start method's name, "
        f"not: {mp_context!r} ({type(mp_context).__name__})"
    )
    raise TypeError(msg)


def fresh_interpreters(context: typing.Any) -> str | None:  # noqa: ANN401
    """``"spawn"`` or ``"forkserver"`` when the workers of a manager with
    this context run in fresh interpreters; None when they are forked."""
    try:
        method = context.get_start_method()
    except Exception:  # noqa: BLE001
        return None
    return method if method in FRESH else None


class _Passing:
    """Stands for multiprocessing's spawning ``Popen`` while pickling, as
    ``Process.start()`` does, so that what pickles only for a new process
    (a ``Queue``, a ``Lock``, a ``Connection`` of the same context) pickles
    here too. ``inherit``: its fds are kept across the coming exec."""

    def __init__(self, *, inherit: bool) -> None:
        self._inherit = inherit

    def duplicate_for_child(self, fd: int) -> int:
        if self._inherit:
            os.set_inheritable(fd, True)
        return fd

    @staticmethod
    def DupFd(fd: int) -> typing.Any:  # noqa: ANN401, N802
        from multiprocessing.popen_spawn_posix import _DupFd  # noqa: PLC0415

        return _DupFd(fd)


def _dumps(obj: typing.Any, *, inherit: bool) -> bytes:  # noqa: ANN401
    from multiprocessing import context as mp_context  # noqa: PLC0415
    from multiprocessing import reduction  # noqa: PLC0415

    buf = io.BytesIO()
    mp_context.set_spawning_popen(_Passing(inherit=inherit))
    try:
        reduction.ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    finally:
        mp_context.set_spawning_popen(None)
    return buf.getvalue()


def prepare_master() -> None:
    """In the master, before its first fresh-interpreter worker: imports
    what each forked child needs before its exec, once, rather than in
    every child (an import there costs the child CPU and copied pages)."""
    from multiprocessing import popen_spawn_posix, reduction, spawn, util  # noqa: F401, PLC0415

    util._args_from_interpreter_flags()  # type: ignore[attr-defined]  # noqa: SLF001


def check_pickles(obj: typing.Any, what: str, context: typing.Any) -> None:  # noqa: ANN401
    """Raises ``TypeError`` naming ``what`` when ``obj`` does not pickle."""
    try:
        _dumps(obj, inherit=False)
    except Exception as exc:
        method = fresh_interpreters(context)
        msg = (
            f"{what} ({_short_repr(obj)}) cannot be sent to a worker started with "
            f"the {method!r} start method: it does not pickle: {exc}"
        )
        raise TypeError(msg) from exc


def check_config(config: _service_worker.ServiceConfig, context: typing.Any) -> None:  # noqa: ANN401
    """Raises ``TypeError`` naming the service, or the one of its args or
    kwargs, that does not pickle."""
    name = f"service {config.name!r}"
    check_pickles(config.service, name, context)
    for i, arg in enumerate(config.args):
        check_pickles(arg, f"args[{i}] of {name}", context)
    for key, value in config.kwargs.items():
        check_pickles(value, f"kwargs[{key!r}] of {name}", context)


def _short_repr(obj: typing.Any) -> str:  # noqa: ANN401
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


# -- in the forked child, before the exec ------------------------------------

_ENTRY = "import sys; sys.path.append({path!r}); from cotyledon._spawning import main; main()"


def exec_worker(
    config: _service_worker.ServiceConfig,
    identity: str,
    hooks: list[typing.Any],
    method: str,
) -> None:
    """In the forked child: replaces the process with a fresh interpreter
    that runs the worker. Returns only when that failed (reported on
    stderr; the engine then ends the child with status 1)."""
    from multiprocessing import spawn  # noqa: PLC0415

    try:
        proc: typing.Any = multiprocessing.current_process()
        name = proc.name
        number = proc._identity[0] if proc._identity else None  # noqa: SLF001
        preparation = spawn.get_preparation_data(name)
        payload = (method, identity, str(config.service_id), config, list(hooks), name, number, os.getppid())
        data = _dumps(preparation, inherit=True) + _dumps(payload, inherit=True)
        fd = os.memfd_create("cotyledon-worker", 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [
            spawn.get_executable(),
            *multiprocessing.util._args_from_interpreter_flags(),  # type: ignore[attr-defined]  # noqa: SLF001
            "-c",
            _ENTRY.format(path=package_parent),
            str(fd),
        ]
        from cotyledon import _forking  # noqa: PLC0415

        _forking.flush()
        os.execv(argv[0], argv)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.flush()


# -- in the fresh interpreter -------------------------------------------------


class _WorkerRuntime:
    """What the engine calls back in a worker started in a fresh
    interpreter (as ``_Runtime`` in a forked one)."""

    def __init__(self, config: _service_worker.ServiceConfig) -> None:
        self._config = config

    def build(self, key: str, worker_id: int) -> typing.Any:  # noqa: ANN401, ARG002
        from cotyledon import _service_worker  # noqa: PLC0415

        return _service_worker.built_for_engine(self._config, worker_id)

    def signal_handler_failed(self, exc: BaseException) -> int:
        from cotyledon import _service_worker  # noqa: PLC0415

        return _service_worker.report_crash(exc)

    def flush(self, code: int) -> None:  # noqa: ARG002
        from cotyledon import _forking  # noqa: PLC0415

        _forking.flush()


def main() -> None:
    """The fresh interpreter's entry: ``sys.argv[-1]`` is the fd of the
    payload :func:`exec_worker` wrote. Never returns once the worker runs."""
    from multiprocessing import process, spawn  # noqa: PLC0415

    fd = int(sys.argv[-1])
    with open(fd, "rb", closefd=True) as payload_file:
        spawn.prepare(pickle.load(payload_file))
        current: typing.Any = process.current_process()
        current._inheriting = True  # noqa: SLF001
        try:
            payload = pickle.load(payload_file)
        finally:
            current._inheriting = False  # noqa: SLF001
    method, identity, key, config, hooks, name, number, parent_pid = payload

    from cotyledon import _core, _forking  # noqa: PLC0415

    _forking.become_worker_process(multiprocessing.get_context(method), number, parent_pid)
    multiprocessing.current_process().name = name
    # The engine's handlers alone, as in a forked worker (Python's own
    # would be chained, and SIGINT would raise KeyboardInterrupt).
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    engine = _core.Engine(worker=True)
    engine.add(config.name, 1, key, "int")
    for hook in hooks:
        engine.add_hook("new_worker", hook)
    # The application's own handlers run when the engine's loop wakes.
    signal.set_wakeup_fd(engine.wakeup_fd(), warn_on_full_buffer=False)
    engine.run_worker(identity, _WorkerRuntime(config))
