"""Helper application of test_gc_freeze.py: ``python gc_freeze.py MODE``.

MODE is ``default`` (ServiceManager()), ``off`` (``gc_freeze=False``) or
``app_frozen`` (the application calls ``gc.freeze()`` itself before
``run()``). Two workers log ``EV worker_gc frozen=<gc.get_freeze_count()>``
at the start of ``run()``; the master's ``on_reload`` hook logs
``EV master_gc frozen=<count> collected=<n>``, where ``n`` counts the
``__del__`` calls of the reference cycles the master dropped before its
forks (automatic collections are disabled: the hook's ``gc.collect()``
must find them all).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading

import cotyledon

logging.basicConfig(level=logging.DEBUG, format="%(levelname)s:%(name)s:%(message)s", stream=sys.stdout)
LOG = logging.getLogger("app")


def ev(event: str, **kw: object) -> None:
    kw.setdefault("pid", os.getpid())
    LOG.info("EV %s %s", event, " ".join(f"{k}={v}" for k, v in kw.items()))


class Worker(cotyledon.Service):
    name = "gcw"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        self._stop = threading.Event()

    def run(self):
        ev("worker_gc", wid=self.worker_id, frozen=gc.get_freeze_count())
        self._stop.wait()

    def terminate(self):
        self._stop.set()


#: __del__ calls of the master's garbage cycles.
COLLECTED = []


class Cycle:
    """Garbage only a collection can free: it refers to itself."""

    def __init__(self):
        self.me = self

    def __del__(self):
        COLLECTED.append(1)


def main() -> int:
    mode = sys.argv[1]
    kwargs = {"gc_freeze": False} if mode == "off" else {}
    manager = cotyledon.ServiceManager(wait_interval=0, **kwargs)
    made = []
    app_frozen = []

    def on_reload():
        # The cycles made before the forks must still be collectable here.
        gc.collect()
        ev(
            "master_gc",
            frozen=gc.get_freeze_count(),
            app_frozen=app_frozen[0] if app_frozen else 0,
            made=len(made),
            collected=len(COLLECTED),
        )

    manager.add(Worker, workers=2)
    manager.register_hooks(on_reload=on_reload)
    # Cycles made, then dropped, before run(): garbage at every fork. The
    # automatic collections are off, so only the hook's collect() frees
    # them.
    gc.disable()
    for _ in range(5):
        Cycle()
        made.append(1)
    if mode == "app_frozen":
        gc.freeze()
        app_frozen.append(gc.get_freeze_count())
    manager.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
