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
"""Restart policies of a service: the values given to
:py:meth:`ServiceManager.add` (``restart=``, ``stop_on_exit=``,
``backoff=``, ``give_up=``)."""

from __future__ import annotations

import math
import typing

#: What ``restart=`` takes.
RESTART_POLICIES = ("always", "on-failure", "never")

#: The status :py:meth:`ServiceManager.run` exits with (``SystemExit``)
#: when a service gives up (see :py:class:`GiveUp`).
GIVE_UP_STATUS = 125


def _seconds(value: typing.Any, name: str, *, zero: bool = False) -> float:  # noqa: ANN401
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"'{name}' must be a number of seconds, not: {value!r} ({type(value).__name__})"
        raise TypeError(msg)
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        least = ">= 0" if zero else "> 0"
        msg = f"'{name}' must be a finite number of seconds {least}, not: {value!r}"
        raise ValueError(msg)
    return seconds


class Backoff:
    """Exponential backoff of a service's respawns, per worker id.

    After the n-th exit in a row of a worker id (exits the engine caused,
    or restarts the worker announced, aside), its respawn waits
    ``min(max, base * 2 ** (n - 1))`` seconds, less a random part of up to
    ``jitter`` of it. The count resets once a process of that id ran
    ``stable`` seconds. On a service that has a backoff it replaces the
    fork-rate limiter (its forks are neither counted nor held back by it);
    it never delays other services, signals or commands.

    :param base: the first wait, in seconds (> 0)
    :param max: the longest wait, in seconds (>= base)
    :param jitter: keyword only; the random part of each wait, 0 to 1
        excluded (default 0.1)
    :param stable: keyword only; seconds a process must run for its id's
        count to reset (default 10)
    :raises TypeError: a value that is not a number
    :raises ValueError: a value out of range
    """

    __slots__ = ("base", "jitter", "max", "stable")

    def __init__(
        self,
        base: float,
        max: float,  # noqa: A002
        *,
        jitter: float = 0.1,
        stable: float = 10.0,
    ) -> None:
        self.base = _seconds(base, "base")
        self.max = _seconds(max, "max")
        if self.max < self.base:
            msg = f"'max' ({max!r}) must be at least 'base' ({base!r})"
            raise ValueError(msg)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            msg = f"'jitter' must be a number, not: {jitter!r} ({type(jitter).__name__})"
            raise TypeError(msg)
        if not 0 <= jitter < 1:
            msg = f"'jitter' must be from 0 to 1 (excluded), not: {jitter!r}"
            raise ValueError(msg)
        self.jitter = float(jitter)
        self.stable = _seconds(stable, "stable")

    def __repr__(self) -> str:
        return (
            f"Backoff({self.base!r}, {self.max!r}, jitter={self.jitter!r}, stable={self.stable!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def _values(self) -> tuple[float, float, float, float]:
        return (self.base, self.max, self.jitter, self.stable)


class GiveUp:
    """Give up: ``failures`` failures of a service's workers within
    ``window`` seconds stop the manager (gracefully), and
    :py:meth:`ServiceManager.run` raises ``SystemExit(125)``
    (:py:data:`cotyledon.GIVE_UP_STATUS`). A failure is an exit with a
    nonzero status or by a signal that the engine did not cause.

    :param failures: how many failures (an int >= 1)
    :param window: within how many seconds (> 0)
    :raises TypeError: a value of the wrong type
    :raises ValueError: a value out of range
    """

    __slots__ = ("failures", "window")

    def __init__(self, failures: int, window: float) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int):
            msg = f"'failures' must be an int, not: {failures!r} ({type(failures).__name__})"
            raise TypeError(msg)
        if not 1 <= failures <= 2**32 - 1:
            msg = f"'failures' must be an int >= 1, not: {failures!r}"
            raise ValueError(msg)
        self.failures = failures
        self.window = _seconds(window, "window")

    def __repr__(self) -> str:
        return f"GiveUp({self.failures!r}, {self.window!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GiveUp):
            return NotImplemented
        return (self.failures, self.window) == (other.failures, other.window)

    def __hash__(self) -> int:
        return hash((self.failures, self.window))


def check(
    restart: typing.Any,  # noqa: ANN401
    stop_on_exit: typing.Any,  # noqa: ANN401
    backoff: typing.Any,  # noqa: ANN401
    give_up: typing.Any,  # noqa: ANN401
) -> None:
    """Raise TypeError or ValueError unless these are valid arguments of
    :py:meth:`ServiceManager.add`."""
    allowed = '"always", "on-failure" or "never"'
    if not isinstance(restart, str):
        msg = f"'restart' must be {allowed}, not: {restart!r} ({type(restart).__name__})"
        raise TypeError(msg)
    if restart not in RESTART_POLICIES:
        msg = f"'restart' must be {allowed}, not: {restart!r}"
        raise ValueError(msg)
    if not isinstance(stop_on_exit, bool):
        msg = f"'stop_on_exit' must be a bool, not: {stop_on_exit!r} ({type(stop_on_exit).__name__})"
        raise TypeError(msg)
    if backoff is not None and not isinstance(backoff, Backoff):
        msg = f"'backoff' must be a cotyledon.Backoff or None, not: {backoff!r} ({type(backoff).__name__})"
        raise TypeError(msg)
    if give_up is not None and not isinstance(give_up, GiveUp):
        msg = f"'give_up' must be a cotyledon.GiveUp or None, not: {give_up!r} ({type(give_up).__name__})"
        raise TypeError(msg)


def is_default(restart: str, stop_on_exit: bool, backoff: Backoff | None, give_up: GiveUp | None) -> bool:  # noqa: FBT001
    """The contract's policy: nothing to tell the engine."""
    return restart == "always" and not stop_on_exit and backoff is None and give_up is None
