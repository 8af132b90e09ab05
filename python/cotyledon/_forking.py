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

The engine calls :func:`prepare` with the GIL held on the main thread, then
``PyOS_BeforeFork``/``fork``/``PyOS_AfterFork_*``, then :func:`in_parent`
or :func:`in_child`. Locks held by other threads at fork time would stay
held forever in the child: we flush stdio, hold every logging handler's lock
across the fork, and give the child fresh ``sys.stdout``/``sys.stderr``
objects (the old ones may carry a buffer lock another thread held).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import sys
import threading
import typing

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


def prepare() -> list[logging.Handler]:
    """Before the fork: flush stdio, take every logging handler's lock."""
    with contextlib.suppress(Exception):
        _report_threads()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
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


def in_child(held: list[logging.Handler]) -> None:
    """After the fork, in the new worker: usable locks and stdio."""
    # The interpreter's own at-fork hooks may already have re-created the
    # handler locks: releasing is best effort.
    for handler in reversed(held):
        with contextlib.suppress(Exception):
            handler.release()
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
    random.seed()


def flush() -> None:
    """Before the process ends without interpreter shutdown."""
    for handler in _handlers():
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
