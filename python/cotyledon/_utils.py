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
"""Small helpers shared by the manager and the workers.

Private, but kept importable under the names applications and the original
test-suite use.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import typing

from cotyledon import _logrecords

LOG = logging.getLogger(__name__)

SIGALRM = signal.SIGALRM
SIGHUP = signal.SIGHUP
SIGCHLD = signal.SIGCHLD

_SIGNAL_NAMES: dict[int, str] = {
    int(sig): sig.name for sig in signal.Signals if not sig.name.startswith("SIG_")
}


def signal_to_name(sig: int) -> str:
    """``SIGTERM`` for 15; the number as text when unknown (e.g. -15)."""
    return _SIGNAL_NAMES.get(sig, str(sig))


def spawn(target: typing.Callable[..., typing.Any], *args: typing.Any, **kwargs: typing.Any) -> threading.Thread:
    """Start ``target`` in a daemon thread and return the thread."""
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def check_workers(workers: typing.Any, minimum: int) -> None:  # noqa: ANN401
    """Raise ValueError unless ``workers`` is an int >= ``minimum``."""
    if isinstance(workers, int) and workers >= minimum:
        return
    kind = type(workers).__name__
    msg = f"'workers' must be an int >= {minimum}, not: {workers} ({kind})"
    raise ValueError(msg)


def check_workers_type(workers: typing.Any, minimum: int) -> None:  # noqa: ANN401
    """Raise ValueError unless ``workers`` is an int: the engine checks the
    range (>= ``minimum``) itself, with the same message."""
    if not isinstance(workers, int):
        check_workers(workers, minimum)


def check_callable(thing: typing.Any, name: str) -> None:  # noqa: ANN401
    """Raise TypeError unless ``thing`` is callable."""
    if not callable(thing):
        msg = f"'{name}' must be a callable"
        raise TypeError(msg)


def check_path(
    value: typing.Any,  # noqa: ANN401
    name: str,
    max_len: int | None = None,
) -> str | None:
    """``value`` (None, ``str`` or ``os.PathLike``) as a ``str`` path.

    :raises TypeError: any other type
    :raises ValueError: an empty path, a NUL character, more than
        ``max_len`` bytes once encoded
    """
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        kind = type(value).__name__
        msg = f"'{name}' must be a str or os.PathLike, not: {value!r} ({kind})"
        raise TypeError(msg)
    path = os.fsdecode(os.fspath(value))
    if not path:
        msg = f"'{name}' must not be an empty path"
        raise ValueError(msg)
    if "\0" in path:
        msg = f"'{name}' must not contain a NUL character: {path!r}"
        raise ValueError(msg)
    if max_len is not None and len(os.fsencode(path)) > max_len:
        msg = (
            f"'{name}' is too long for a UNIX socket: {len(os.fsencode(path))} bytes, "
            f"{max_len} at most: {path!r}"
        )
        raise ValueError(msg)
    return path


def check_interval(value: typing.Any, name: str, *, zero_ok: bool = False) -> float:  # noqa: ANN401
    """``value`` (an int or float, not a bool) as a positive finite float
    (or zero, with ``zero_ok``).

    :raises TypeError: not a number
    :raises ValueError: zero (unless ``zero_ok``), negative, infinite or NaN
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = type(value).__name__
        msg = f"'{name}' must be a number of seconds, not: {value!r} ({kind})"
        raise TypeError(msg)
    seconds = float(value)
    if not (math.isfinite(seconds) and (seconds > 0 or (zero_ok and seconds == 0))):
        what = "non-negative" if zero_ok else "positive"
        msg = f"'{name}' must be a {what} finite number of seconds, not: {value!r}"
        raise ValueError(msg)
    return seconds


def spawn_process(
    target: typing.Callable[..., typing.Any],
    ctx: typing.Any = None,  # noqa: ANN401
    *args: typing.Any,
    **kwargs: typing.Any,
) -> multiprocessing.Process:
    """Start ``target(*args, **kwargs)`` in a multiprocessing process.

    Kept for compatibility: the engine forks workers itself and does not
    use it.
    """
    factory = multiprocessing.Process if ctx is None else ctx.Process
    process = factory(target=target, args=args, kwargs=kwargs)
    process.start()
    return process


_setproctitle: typing.Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - optional dependency
    _setproctitle = None


def set_process_title(title: str) -> None:
    """Set the process title when ``setproctitle`` is installed."""
    if _setproctitle is not None:
        _setproctitle(title)


def get_process_name() -> str:
    """The program's name: the base name of ``sys.argv[0]``."""
    argv: list[str] = getattr(sys, "argv", None) or [""]
    # os.path.basename's result, without running posixpath's Python code
    # in every new worker (its first run there copies pages).
    return str(argv[0]).rpartition(os.sep)[2]


def run_hook(name: str, hook: typing.Callable[..., typing.Any], *args: typing.Any, **kwargs: typing.Any) -> bool:
    """Call one hook of event ``name``; False when it raised (logged as
    Cotyledon logs it)."""
    pid = os.getpid()
    try:
        hook(*args, **kwargs)
    except SystemExit as exc:
        if os.getpid() != pid:
            # A process the hook forked is leaving (os.fork(), then
            # sys.exit()): it ends, as it would at the top of a program,
            # rather than go on as a second master.
            exit_forked_child(exc)
        raise
    except Exception:
        _logrecords.log(
            LOG, logging.ERROR, "Exception raised during %s hooks", (name,),
            _logrecords.HOOK_EXCEPTION, exc_info=True,
        )
        return False
    return True


def run_hooks(name: str, hooks: typing.Iterable[typing.Callable[..., typing.Any]], *args: typing.Any, **kwargs: typing.Any) -> None:
    """Call each hook in order; on the first exception, log it and stop.
    (Kept for programs that call it: the manager registers each hook with
    the engine, which calls ``run_hook``.)"""
    for hook in hooks:
        if not run_hook(name, hook, *args, **kwargs):
            return


def exit_forked_child(exc: SystemExit) -> typing.NoReturn:
    """Ends a process forked by application code, on a ``SystemExit``
    that would otherwise unwind into the engine: the interpreter's exit
    (other threads joined, atexit callbacks, stdio flushed), then
    ``_exit`` with the exception's status."""
    code = exit_code_of(exc)
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(BaseException):
            shutdown()
    with contextlib.suppress(BaseException):
        import atexit  # noqa: PLC0415

        atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            if stream is not None:
                stream.flush()
    os._exit(code)


def log_unhandled_exception(exc: BaseException | None = None) -> None:
    """Logs ``exc`` (default: the exception being handled) as ``Unhandled
    exception``."""
    _logrecords.log(
        LOG,
        logging.ERROR,
        "Unhandled exception",
        (),
        _logrecords.UNHANDLED_EXCEPTION,
        exc_info=exc if exc is not None else True,
    )


def exit_code_of(exc: SystemExit) -> int:
    """The process status a ``SystemExit`` stands for, as Python computes it."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
        sys.stderr.flush()
    return 1


@contextlib.contextmanager
def exit_on_exception() -> typing.Iterator[None]:
    """End the process at once when the block raises.

    ``SystemExit`` exits with its code; anything else is logged as
    ``Unhandled exception`` and exits with status 2.
    """
    try:
        yield
    except SystemExit as exc:
        os._exit(exit_code_of(exc))
    except BaseException:
        log_unhandled_exception()
        os._exit(2)
