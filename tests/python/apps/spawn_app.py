"""Scenarios of the start methods (``mp_context``): ``python spawn_app.py
SCENARIO [ARGS]``.

Module-level code runs in the master and, with ``spawn`` or ``forkserver``,
again in each worker, where this file is imported as ``__mp_main__``:
``STATE`` is ``"master"`` in the master (set under the ``__main__`` guard)
and in the workers it forks, ``"imported"`` in a fresh interpreter.
Events are logged as ``INFO:app:EV <event> key=value ...`` (see
conftest.App.event).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading

import cotyledon

logging.basicConfig(
    level=logging.DEBUG,
    format="%(levelname)s:%(name)s:%(message)s",
    stream=sys.stdout,
)
LOG = logging.getLogger("app")

STATE = "imported"


def ev(event: str, **kw: object) -> None:
    kw.setdefault("pid", os.getpid())
    LOG.info("EV %s %s", event, " ".join(f"{k}={v}" for k, v in kw.items()))


class Probe(cotyledon.Service):
    """Says where it runs: the module state it sees, its parent, the name
    ``multiprocessing`` gives it, what ``__main__`` is."""

    name = "probe"

    def __init__(self, worker_id: int, tag: str, *, size: int = 0) -> None:
        super().__init__(worker_id)
        self._stop = threading.Event()
        self._tag = tag
        self._size = size

    def run(self) -> None:
        ev(
            "run",
            name=self.name,
            wid=self.worker_id,
            state=STATE,
            ppid=os.getppid(),
            tag=self._tag,
            size=self._size,
            process=multiprocessing.current_process().name,
            main=sys.modules["__main__"].__name__,
        )
        self._stop.wait()

    def reload(self) -> None:
        ev("reload", name=self.name, wid=self.worker_id)

    def terminate(self) -> None:
        ev("terminate", name=self.name, wid=self.worker_id)
        self._stop.set()


class Restarter(Probe):
    """Keeps Service.reload(): SIGHUP restarts the worker (it announces
    the restart to the master through the fd it inherited)."""

    name = "restarter"
    reload = cotyledon.Service.reload


def on_new_worker(tag: str, service_id: object, worker_id: int, service: object) -> None:
    ev("hook", tag=tag, wid=worker_id, state=STATE, service=type(service).__name__, sid=service_id)


def on_usr1(signum: int, frame: object) -> None:
    ev("usr1", state=STATE)


class Handlers(Probe):
    """Installs its own SIGUSR1 handler, which runs in the worker."""

    name = "handlers"

    def __init__(self, worker_id: int, tag: str) -> None:
        super().__init__(worker_id, tag)
        signal.signal(signal.SIGUSR1, on_usr1)


def _context(mode: str) -> object:
    """``fork``, ``spawn``, ``forkserver``: that context;
    ``spawn-name``: the name ``"spawn"``; ``default``: None;
    ``default-forkserver`` / ``default-spawn``: None after
    ``multiprocessing.set_start_method()`` (``forkserver`` is CPython
    3.14's default)."""
    if mode == "default":
        return None
    if mode.startswith("default-"):
        multiprocessing.set_start_method(mode.split("-", 1)[1])
        return None
    if mode == "spawn-name":
        return "spawn"
    return multiprocessing.get_context(mode)


def scenario_state(argv: list[str]) -> None:
    """``state MODE``: a probe (2 workers), a restarter (restart policy
    "never": only an announced restart starts it again), a service with its
    own signal handler; an on_new_worker hook (functools.partial)."""
    manager = cotyledon.ServiceManager(mp_context=_context(argv[0]))
    # 64 KiB of args: more than a pipe holds.
    sids = {
        "Probe": manager.add(Probe, workers=2, args=("p",), kwargs={"size": len("x" * 65536)}),
    }
    # The restart policy is ours (the tests skip that part on the reference).
    policy = {"restart": "never"} if hasattr(cotyledon, "Backoff") else {}
    sids["Restarter"] = manager.add(Restarter, workers=1, args=("r",), **policy)
    sids["Handlers"] = manager.add(Handlers, workers=1, args=("h",))
    for service, sid in sids.items():
        ev("added", service=service, sid=sid)
    manager.register_hooks(on_new_worker=functools.partial(on_new_worker, "partial"))
    ev("master", method=manager.mp_context.get_start_method())
    manager.run()


def scenario_pickle(argv: list[str]) -> None:
    """``pickle WHAT``: a spawn manager given something that does not
    pickle; logs the error raised (``where`` says by which call)."""
    manager = cotyledon.ServiceManager(mp_context=multiprocessing.get_context("spawn"))
    lock = threading.Lock()
    try:
        if argv[0] == "arg":
            manager.add(Probe, args=("p",), kwargs={"size": 1})
            manager.add(Probe, args=(lock,))
        elif argv[0] == "kwarg":
            manager.add(Probe, args=("p",), kwargs={"size": lock})
        elif argv[0] == "service":

            class Local(Probe):
                pass

            manager.add(Local, args=("p",))
        elif argv[0] == "hook":
            manager.register_hooks(on_new_worker=lambda *a: None)
        elif argv[0] == "run":
            items: list[object] = ["p"]
            manager.add(Probe, args=items)
            # Made unpicklable after add(): run() checks again.
            items.append(lock)
            manager._services[next(iter(manager._services))].args = tuple(items)  # noqa: SLF001
            manager.run()
    except TypeError as exc:
        ev("error", type=type(exc).__name__)
        print(f"ERROR: {exc}", flush=True)
        sys.exit(3)
    ev("no_error")


if __name__ == "__main__":
    STATE = "master"
    globals()["scenario_" + sys.argv[1]](sys.argv[2:])
