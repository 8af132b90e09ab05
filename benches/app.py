"""The benchmark application, Python face.

One script, run unchanged with the reference (`cotyledon==2.2.0` from PyPI)
and with our wheel: only the interpreter (the virtualenv) differs.

Configuration (environment, set by benches/driver.py):

  BENCH_SOCK           path of the driver's UNIX datagram socket (required)
  BENCH_WORKERS        number of workers (default 1)
  BENCH_WAIT_INTERVAL  ServiceManager(wait_interval=...); "default" leaves it
                       unset (Cotyledon's default, 0.01 s)
  BENCH_RELOAD         "1": the service implements reload() (it only reports
                       the event); "0": the default reload (restart)
  BENCH_GC_FREEZE      "0" or "1": ServiceManager(gc_freeze=...), our wheel
                       only (unset: the library's default)
  BENCH_MP_CONTEXT     a start method: ServiceManager(mp_context=
                       multiprocessing.get_context(...)); unset: the default

Each worker reports `<event> <worker_id> <pid> <CLOCK_MONOTONIC ns>` from
__init__ ("init"), run() ("run"), reload() ("reload") and terminate()
("term"). The master itself opens no socket, so the footprint figures are
the engine's own.
"""

import multiprocessing
import os
import socket
import sys
import time

import cotyledon

SOCK = os.environ["BENCH_SOCK"]
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
WAIT = os.environ.get("BENCH_WAIT_INTERVAL", "default")
RELOAD = os.environ.get("BENCH_RELOAD", "1") == "1"
MP_CONTEXT = os.environ.get("BENCH_MP_CONTEXT")


class _Reporter:
    def __init__(self, worker_id):
        self._wid = worker_id
        self._pid = os.getpid()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send(self, event):
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        msg = f"{event} {self._wid} {self._pid} {now}".encode()
        try:
            self._sock.sendto(msg, SOCK)
        except OSError:
            pass  # the driver went away: nothing to report to


class BenchService(cotyledon.Service):
    name = "bench"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        self._reporter = _Reporter(worker_id)
        self._reporter.send("init")

    def run(self):
        self._reporter.send("run")

    def terminate(self):
        self._reporter.send("term")


class ReloadingBenchService(BenchService):
    name = "bench"

    def reload(self):
        self._reporter.send("reload")


def main():
    kwargs = {}
    if WAIT != "default":
        kwargs["wait_interval"] = float(WAIT)
    if os.environ.get("BENCH_GC_FREEZE") in ("0", "1"):
        kwargs["gc_freeze"] = os.environ["BENCH_GC_FREEZE"] == "1"
    if MP_CONTEXT:
        kwargs["mp_context"] = multiprocessing.get_context(MP_CONTEXT)
    manager = cotyledon.ServiceManager(**kwargs)
    manager.add(ReloadingBenchService if RELOAD else BenchService, workers=WORKERS)
    manager.run()


if __name__ == "__main__":
    sys.exit(main())
