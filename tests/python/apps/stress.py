"""Stress applications: ``python stress.py SCENARIO``.

forkstorm: the master keeps busy threads that log, print and hold locks at
any moment, while workers that end at once are forked again and again: a
worker must never deadlock on a lock inherited held.

storm: workers that reload; the test sends signals as fast as it can.
"""

from __future__ import annotations

import logging
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
NOISE = logging.getLogger("noise")


def ev(event: str, **kw: object) -> None:
    kw.setdefault("pid", os.getpid())
    LOG.info("EV %s %s", event, " ".join(f"{k}={v}" for k, v in kw.items()))


class Brief(cotyledon.Service):
    """Logs once, then ends its worker: the master forks a new one."""

    name = "brief"

    def run(self):
        ev("run", wid=self.worker_id)
        print(f"stdout from {os.getpid()}", flush=False)
        raise SystemExit(0)


def busy_threads(stop: threading.Event) -> list[threading.Thread]:
    lock = threading.Lock()

    def logger() -> None:
        while not stop.is_set():
            NOISE.debug("noise %s", "x" * 200)

    def printer() -> None:
        while not stop.is_set():
            sys.stderr.write("e" * 300 + "\n")

    def locker() -> None:
        while not stop.is_set():
            with lock:
                pass

    threads = [threading.Thread(target=t, name=t.__name__, daemon=True) for t in (logger, printer, locker)]
    for t in threads:
        t.start()
    return threads


class Manager(cotyledon.ServiceManager):
    # As the reference's own tests do: no fork-rate limit, fork at once.
    def _slowdown_respawn_if_needed(self) -> None:
        pass


def scenario_forkstorm() -> None:
    # The noise goes to stderr, itself sent to /dev/null: the locks of the
    # stream and of its logging handler are taken as often as ever, without
    # megabytes of output.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    NOISE.propagate = False
    NOISE.addHandler(logging.StreamHandler(sys.stderr))
    NOISE.setLevel(logging.DEBUG)
    stop = threading.Event()
    threads = busy_threads(stop)
    manager = Manager(wait_interval=0)
    manager.add(Brief, workers=4)
    try:
        manager.run()
    finally:
        # Daemon threads still writing to stderr at interpreter shutdown
        # make CPython abort: stop them first.
        stop.set()
        for t in threads:
            t.join()


class Reloading(cotyledon.Service):
    name = "reloading"

    def __init__(self, worker_id, marker):
        super().__init__(worker_id)
        self.marker = marker
        self._stop = threading.Event()
        ev("init", wid=worker_id, gen=self.generation())

    def generation(self) -> str:
        with open(self.marker) as f:
            return f.read().strip()

    def run(self):
        ev("run", wid=self.worker_id)
        self._stop.wait()

    def reload(self):
        ev("reload", wid=self.worker_id, gen=self.generation())

    def terminate(self):
        self._stop.set()


def scenario_storm() -> None:
    usr2 = []
    signal.signal(signal.SIGUSR2, lambda *_: usr2.append(1))
    manager = Manager(wait_interval=0)
    manager.add(Reloading, workers=8, args=(sys.argv[2],))
    try:
        manager.run()
    except SystemExit:
        ev("usr2", count=len(usr2))
        raise


if __name__ == "__main__":
    {"forkstorm": scenario_forkstorm, "storm": scenario_storm}[sys.argv[1]]()
