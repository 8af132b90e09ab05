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
"""The Python side of forking a worker from the Rust engine.

With the GIL held on the main thread, the engine prepares the fork, then
calls ``PyOS_BeforeFork``/``fork``/``PyOS_AfterFork_*``, then
:func:`in_parent` or :func:`in_child`. Stdio is always flushed before the
fork. Locks held by other threads at fork time would stay held forever in
the child, so when other threads run Python code in the master we also hold
every logging handler's lock across the fork (:func:`prepare`, through the
runtime's ``prefork()``) and give the child fresh ``sys.stdout``/
``sys.stderr`` objects (the old ones may carry a buffer lock another thread
held). A master alone does neither, and the engine then flushes stdio and
numbers the worker itself, running no Python frame: every page the master
touches around a fork is copied again after it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import typing

from cotyledon import _core

# Diagnostics of the Python face live outside ``cotyledon.*``: tools compare
# every record of those loggers with the reference library's.
DIAG = logging.getLogger("cotyledon_rs")

# Old stdio objects replaced in a child: never flushed, closed or freed.
_retired: list[typing.Any] = []
_threads_reported = False


def _handlers() -> list[logging.Handler]:
    refs = getattr(logging, "_handlerList", [])
    found = []
    for ref in list(refs):
        handler = ref() if callable(ref) else ref
        if handler is not None and getattr(handler, "lock", None) is not None:
            found.append(handler)
    return found


def _report_threads() -> None:
    global _threads_reported  # noqa: PLW0603
    if _threads_reported:
        return
    main = threading.main_thread()
    others = [t.name for t in threading.enumerate() if t is not main]
    if others:
        _threads_reported = True
        DIAG.debug(
            "Forking workers while other threads run in the master: %s",
            ", ".join(others),
        )


def flush_stdio() -> None:
    """Writes out what ``sys.stdout`` and ``sys.stderr`` hold (a worker
    would otherwise inherit the buffers and write them again)."""
    # try/except rather than contextlib.suppress: this runs before every
    # fork, and each object allocated here is a page copied again after it.
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass


def prepare() -> list[logging.Handler]:
    """Before the fork, while other threads run Python code: flush stdio,
    take every logging handler's lock."""
    with contextlib.suppress(Exception):
        _report_threads()
    flush_stdio()
    held = []
    for handler in _handlers():
        try:
            handler.acquire()
        except Exception:  # noqa: BLE001, S112
            continue
        held.append(handler)
    return held


def in_parent(held: list[logging.Handler]) -> None:
    """After the fork, in the master: release what :func:`prepare` took."""
    for handler in reversed(held):
        with contextlib.suppress(Exception):
            handler.release()


def _fresh_stream(stream: typing.Any) -> typing.Any:  # noqa: ANN401
    """A new text stream on the same fd as ``stream``, or None."""
    if not isinstance(stream, io.TextIOWrapper):
        return None
    try:
        fd = stream.fileno()
        # Same buffering as the old one (stderr is unbuffered, write-through).
        raw = isinstance(getattr(stream, "buffer", None), io.RawIOBase)
        binary = open(fd, "wb", buffering=0 if raw else -1, closefd=False)  # noqa: PTH123, SIM115
        return io.TextIOWrapper(
            binary,
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
            write_through=getattr(stream, "write_through", False),
        )
    except Exception:  # noqa: BLE001
        return None


def in_child(held: list[logging.Handler], threaded: bool) -> None:  # noqa: FBT001
    """After the fork, in the new worker: usable locks and stdio.

    ``threaded``: other threads ran Python code in the master at the fork.
    Only then may a stdio object carry a lock that nobody will release, and
    only then are fresh ones made (two file objects less per worker).
    ``random`` needs nothing: the interpreter's own at-fork hook reseeds it.
    """
    # The interpreter's own at-fork hooks may already have re-created the
    # handler locks: releasing is best effort.
    for handler in reversed(held):
        with contextlib.suppress(Exception):
            handler.release()
    if not threaded:
        return
    replaced: dict[int, typing.Any] = {}
    for name in ("stdout", "stderr"):
        old = getattr(sys, name, None)
        if old is None:
            continue
        new = replaced.get(id(old)) or _fresh_stream(old)
        if new is None:
            continue
        replaced[id(old)] = new
        _retired.append(old)
        setattr(sys, name, new)
        if getattr(sys, f"__{name}__", None) is old:
            setattr(sys, f"__{name}__", new)
    if replaced:
        for handler in _handlers():
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and id(stream) in replaced:
                # Not setStream(): it would flush the old, maybe locked, one.
                handler.stream = replaced[id(stream)]


def next_process_identity() -> int | None:
    """In the master, before a fork: the number ``multiprocessing`` would
    give the worker's Process object (the reference starts workers as
    ``multiprocessing`` processes)."""
    try:
        mp_process: typing.Any = multiprocessing.process
        return int(next(mp_process._process_counter))  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return None


def become_worker_process(context: typing.Any, identity: int | None, parent_pid: int) -> None:  # noqa: ANN401
    """In a new worker: what ``multiprocessing`` sets up in a process it
    starts, so that ``multiprocessing.current_process()`` (and so
    ``%(processName)s``) names the worker as the reference's do, and the
    callbacks of ``multiprocessing.util.register_after_fork`` run."""
    if identity is None:
        return
    try:
        # Imported by the master already (module level), never after the
        # fork: importing in each new worker cost 2-3 ms and 1 MB of private
        # memory per worker.
        mp_process: typing.Any = multiprocessing.process
        # multiprocessing.util only if the application imported it: it pulls
        # in subprocess and more, a bigger master to copy at every fork, and
        # whoever registers a finalizer or an after-fork callback imported it.
        mp_util: typing.Any = sys.modules.get("multiprocessing.util")

        process_class = getattr(context, "Process", None)
        if process_class is None:
            process_class = multiprocessing.Process
        name = f"{process_class.__name__}-{identity}"
        master: typing.Any = mp_process._current_process  # noqa: SLF001
        proc: typing.Any
        if process_class.__init__ is mp_process.BaseProcess.__init__:
            # What BaseProcess.__init__ sets, without its calls (the
            # master's counter, the dangling set's weak reference and
            # callback): each first run in a new worker copies pages.
            proc = object.__new__(process_class)
            proc.__dict__.update(
                _identity=(identity,),
                _config=master._config.copy(),  # noqa: SLF001
                _parent_pid=parent_pid,
                _parent_name=master._name,  # noqa: SLF001
                _popen=None,
                _closed=False,
                _target=None,
                _args=(),
                _kwargs={},
                _name=name,
            )
        else:
            proc = process_class(name=name)
            proc._identity = (identity,)  # noqa: SLF001
            proc._parent_pid = parent_pid  # noqa: SLF001
            proc._parent_name = master.name  # noqa: SLF001
        # The master's objects replaced here are kept, never freed: freeing
        # one writes to its page and its pool's (copies of the master's).
        _retired.append(master)
        mp_process._current_process = proc  # noqa: SLF001
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            # multiprocessing.parent_process(): its sentinel is readable
            # once the master is gone (a pidfd is).
            try:
                sentinel = pidfd_open(parent_pid)
                mp_process._parent_process = mp_process._ParentProcess(  # noqa: SLF001
                    proc._parent_name,  # noqa: SLF001
                    parent_pid,
                    sentinel,
                )
            except OSError:
                pass
        _retired.append(mp_process._children)  # noqa: SLF001
        mp_process._children = set()  # noqa: SLF001
        _retired.append(mp_process._process_counter)  # noqa: SLF001
        mp_process._process_counter = itertools.count(1)  # noqa: SLF001
        if mp_util is None:
            return
        if mp_util._finalizer_registry:  # noqa: SLF001
            mp_util._finalizer_registry.clear()  # noqa: SLF001
        # Most applications register nothing: each page a new worker
        # touches costs it a copy.
        # (Its mapping looked at directly: the WeakValueDictionary's own
        # __len__ is one more function run for the first time.)
        registry = mp_util._afterfork_registry  # noqa: SLF001
        if getattr(registry, "data", registry):
            mp_util._run_after_forkers()  # noqa: SLF001
    except Exception:  # noqa: BLE001
        DIAG.debug("multiprocessing state not set up in the worker", exc_info=True)


# systemd's variables and their keys in ``os.environ``'s own mapping.
_SYSTEMD_KEYS = tuple((name, os.fsencode(name)) for name in _core.SYSTEMD_VARS)


def forget_systemd_environment() -> None:
    """In a new worker: systemd's variables (the notify socket, the
    watchdog, socket activation) are the master's alone. The engine took
    them out of the C environment at the fork; ``os.environ`` follows."""
    # Looked up in os.environ's encoded mapping: ``name in os.environ``
    # runs os's and collections.abc's Python code and raises a KeyError
    # per absent name, pages of the master's copied in every worker.
    environ = os.environ
    data = getattr(environ, "_data", None)
    for name, key in _SYSTEMD_KEYS:
        if not isinstance(data, dict) or key in data:
            environ.pop(name, None)


# The signals the engine catches in a master or worker, and what a Python
# program has for them.
_ENGINE_SIGNALS = (
    (signal.SIGTERM, signal.SIG_DFL),
    (signal.SIGHUP, signal.SIG_DFL),
    (signal.SIGINT, signal.default_int_handler),
    (signal.SIGCHLD, signal.SIG_DFL),
)


def _after_fork_in_child() -> None:
    """In a process the application forked from a master or a worker
    (``os.fork()``, ``multiprocessing``, ``concurrent.futures``) while the
    engine runs: a plain Python process. The engine's signal handlers
    would only write to the engine's pipe (``Process.terminate()`` would
    not end it) and its wakeup fd is the engine's. Registered once at
    import; in the workers the engine forks, one call that says no."""
    if not _core.forked_by_application():
        return
    with contextlib.suppress(Exception):
        signal.set_wakeup_fd(-1)
    for signum, handler in _ENGINE_SIGNALS:
        with contextlib.suppress(Exception):
            signal.signal(signum, handler)
    _main_thread_after_fork()


def _main_thread_after_fork() -> None:
    """In a process forked from a thread Python knows only as a dummy
    (``run()``, ``reload()``, ``terminate()`` and hooks run on engine
    threads): that thread is the child's main thread, and before 3.13
    ``threading`` leaves it a ``_DummyThread`` without the state its
    shutdown needs, so the child's interpreter exit fails (and
    ``multiprocessing`` then exits 1). Give it that state, as a thread
    ``threading`` started would have."""
    main: typing.Any = threading.main_thread()
    dummy: typing.Any = getattr(threading, "_DummyThread", None)
    if dummy is None or type(main) is not dummy:
        return
    set_tstate_lock = getattr(main, "_set_tstate_lock", None)
    if set_tstate_lock is None:
        # 3.13+: threading._after_fork does it itself.
        return
    try:
        main.__class__ = threading._MainThread  # type: ignore[attr-defined]  # noqa: SLF001
        main._name = "MainThread"  # noqa: SLF001
        main._daemonic = False  # noqa: SLF001
        set_tstate_lock()
    except Exception:  # noqa: BLE001
        DIAG.debug("main thread not set up after a fork", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def flush() -> None:
    """Before the process ends without interpreter shutdown."""
    for handler in _handlers():
        try:
            handler.flush()
        except Exception:  # noqa: BLE001, S110
            pass
    flush_stdio()
