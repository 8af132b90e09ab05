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
"""The records of the ``cotyledon.*`` loggers, as Cotyledon 2.2.0 makes them.

The engine writes its lines in Rust. Filters, formatters and error
trackers see more than the text: ``msg`` (the template they group by),
``args``, ``module``, ``funcName``, ``filename`` and ``lineno``. Each line
of the contract is recognised here from the engine's text and emitted with
the template, arguments and call site Cotyledon gives it (the site's
``pathname`` is our module of the same name). A text not in the table goes
the usual way (``emit`` returns False).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import typing

_HERE = os.path.dirname(os.path.abspath(__file__))
_MANAGER = "cotyledon._service_manager"
_WORKER = "cotyledon._service_worker"


class Site(typing.NamedTuple):
    """Where Cotyledon logs a line: module, function and line."""

    module: str
    func: str
    lineno: int


def _signal_arg(name: str) -> str:
    # Cotyledon gives the negative exit code, as text.
    try:
        return str(-int(signal.Signals[name]))
    except KeyError:
        return name if name.startswith("-") else f"-{name}"


_Args = typing.Callable[["re.Match[str]"], typing.Any]

# logger, pattern of the engine's text, template, arguments, site.
_TABLE: list[tuple[str, re.Pattern[str], str, _Args | None, Site]] = [
    (
        _MANAGER,
        re.compile(r"Child (\d+) exited with status (-?\d+)\Z"),
        "Child %(pid)d exited with status %(code)d",
        lambda m: {"pid": int(m[1]), "code": int(m[2])},
        Site("_service_manager", "_get_last_worker_died", 489),
    ),
    (
        _MANAGER,
        re.compile(r"Child (\d+) killed by signal (\S+)\Z"),
        "Child %(pid)d killed by signal %(sig)s",
        lambda m: {"pid": int(m[1]), "sig": _signal_arg(m[2])},
        Site("_service_manager", "_get_last_worker_died", 484),
    ),
    (
        _MANAGER,
        re.compile(r"Manager shutdown requested\Z"),
        "Manager shutdown requested",
        None,
        Site("_service_manager", "shutdown", 397),
    ),
    (
        _MANAGER,
        re.compile(r"Caught SIGTERM signal, graceful exiting of master process\Z"),
        "Caught SIGTERM signal, graceful exiting of master process",
        None,
        Site("_service_manager", "_shutdown", 402),
    ),
    (
        _MANAGER,
        re.compile(r"Killing services with signal SIGTERM\Z"),
        "Killing services with signal SIGTERM",
        None,
        Site("_service_manager", "_shutdown", 432),
    ),
    (
        _MANAGER,
        re.compile(r"Waiting services to terminate\Z"),
        "Waiting services to terminate",
        None,
        Site("_service_manager", "_shutdown", 441),
    ),
    (
        _MANAGER,
        re.compile(r"Shutdown finish\Z"),
        "Shutdown finish",
        None,
        Site("_service_manager", "_shutdown", 446),
    ),
    (
        _MANAGER,
        re.compile(r"Caught SIGINT signal, instantaneous exiting\Z"),
        "Caught SIGINT signal, instantaneous exiting",
        None,
        Site("_service_manager", "_fast_exit", 506),
    ),
    (
        _MANAGER,
        re.compile(r"Graceful shutdown timeout exceeded, instantaneous exiting of master process\Z"),
        "Graceful shutdown timeout exceeded, instantaneous exiting of master process",
        None,
        Site("_service_manager", "_fast_exit", 506),
    ),
    (
        _MANAGER,
        re.compile(r"Forking too fast, sleeping\Z"),
        "Forking too fast, sleeping",
        None,
        Site("_service_manager", "_slowdown_respawn_if_needed", 525),
    ),
    (
        _WORKER,
        re.compile(r"Run service (.*)\Z", re.DOTALL),
        "Run service %s",
        lambda m: (m[1],),
        Site("_service_worker", "wait_forever", 218),
    ),
    (
        _WORKER,
        re.compile(r"Caught SIGTERM signal, graceful exiting of service (.*)\Z", re.DOTALL),
        "Caught SIGTERM signal, graceful exiting of service %s",
        lambda m: (m[1],),
        Site("_service_worker", "_on_signal_received", 185),
    ),
    (
        _WORKER,
        re.compile(r"Graceful shutdown timeout \((\d+)\) exceeded, exiting (.*) now\.\Z", re.DOTALL),
        "Graceful shutdown timeout (%d) exceeded, exiting %s now.",
        lambda m: (int(m[1]), m[2]),
        Site("_service_worker", "_alarm", 163),
    ),
    (
        _WORKER,
        re.compile(r"Caught SIGINT signal, instantaneous exiting of service (.*)\Z", re.DOTALL),
        "Caught SIGINT signal, instantaneous exiting of service %s",
        lambda m: (m[1],),
        Site("_service_worker", "_fast_exit", 171),
    ),
    (
        _WORKER,
        re.compile(r"Parent process has died unexpectedly, (.*) exiting\Z", re.DOTALL),
        "Parent process has died unexpectedly, %s exiting",
        lambda m: (m[1],),
        Site("_service_worker", "_watch_parent_process", 153),
    ),
]

#: Sites of the lines the Python face logs itself.
HOOK_EXCEPTION = Site("_utils", "run_hooks", 126)
UNHANDLED_EXCEPTION = Site("_utils", "exit_on_exception", 137)


def log(
    logger: logging.Logger,
    level: int,
    msg: str,
    args: typing.Any,  # noqa: ANN401
    site: Site,
    *,
    exc_info: bool | BaseException = False,
) -> None:
    """Logs ``msg % args`` on ``logger`` as if from ``site``; ``exc_info``:
    the exception being handled (True) or that one."""
    if not logger.isEnabledFor(level):
        return
    if isinstance(exc_info, BaseException):
        info: typing.Any = (type(exc_info), exc_info, exc_info.__traceback__)
    else:
        info = sys.exc_info() if exc_info else None
    if isinstance(args, dict):
        args = (args,)
    record = logger.makeRecord(
        logger.name,
        level,
        os.path.join(_HERE, f"{site.module}.py"),
        site.lineno,
        msg,
        args,
        info,
        site.func,
    )
    logger.handle(record)


def emit(target: str, level: int, text: str) -> bool:
    """A line of the engine on logger ``target``: True when logged here
    (the engine's level check passed already)."""
    # The level first: most of the engine's lines (the worker's "Run
    # service", at DEBUG) are dropped, and then no pattern is matched, no
    # record built: each first run of that code in a new worker copies
    # pages of the master's.
    logger = _LOGGERS.get(target) or _logger(target)
    if not logger.isEnabledFor(level):
        return True
    for name, pattern, template, args, site in _TABLE:
        if name != target:
            continue
        m = pattern.match(text)
        if m is None:
            continue
        log(logger, level, template, args(m) if args else (), site)
        return True
    return False


# The engine's loggers, by name: ``logging.getLogger`` takes logging's
# module lock and runs the manager's code, in every new worker again.
_LOGGERS: dict[str, logging.Logger] = {}


def _logger(name: str) -> logging.Logger:
    found = _LOGGERS.get(name)
    if found is None:
        found = _LOGGERS[name] = logging.getLogger(name)
    return found


def warm() -> None:
    """In the master, before its first fork: the engine's loggers looked
    up and their answers for every level cached (``Logger.isEnabledFor``
    caches them), so that a new worker dropping a line only reads what
    it inherited. A level set later clears the caches: then a worker
    asks logging again, as before."""
    for name in (_MANAGER, _WORKER):
        logger = _logger(name)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            logger.isEnabledFor(level)
