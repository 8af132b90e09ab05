"""An oslo.service 4.x application on the threading backend (built on
Cotyledon): ``python oslo_spawn_app.py START_METHOD CONFIG_FILE``.

The master fills module-level state (``REGISTRY``) and holds a lock, as a
real service's master does before it launches workers; under ``spawn`` a
worker is a fresh interpreter that must not see either, while the
configuration (``[app] greeting``, and cotyledon's oslo glue hook) reaches
it pickled. Events: ``INFO:app:EV <event> key=value ...``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from oslo_config import cfg
from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)

from oslo_service import service  # noqa: E402

logging.basicConfig(
    level=logging.DEBUG,
    format="%(levelname)s:%(name)s:%(message)s",
    stream=sys.stdout,
)
LOG = logging.getLogger("app")

REGISTRY: dict[str, object] = {}
OPTS = [cfg.StrOpt("greeting", default="none")]


def ev(event: str, **kw: object) -> None:
    kw.setdefault("pid", os.getpid())
    LOG.info("EV %s %s", event, " ".join(f"{k}={v}" for k, v in kw.items()))


class Greeter(service.ServiceBase):
    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self._stop: threading.Event | None = None

    def start(self) -> None:
        # Made in the worker: an Event does not pickle.
        self._stop = threading.Event()
        ev(
            "start",
            registry=",".join(sorted(REGISTRY)) or "empty",
            greeting=self.conf.app.greeting,
            ppid=os.getppid(),
            main=sys.modules["__main__"].__name__,
        )

    def wait(self) -> None:
        if self._stop is not None:
            self._stop.wait()

    def stop(self) -> None:
        ev("stop")
        if self._stop is not None:
            self._stop.set()

    def reset(self) -> None:
        ev("reset", greeting=self.conf.app.greeting)


if __name__ == "__main__":
    REGISTRY["master_only"] = threading.Lock()
    conf = cfg.ConfigOpts()
    conf.register_opts(OPTS, group="app")
    conf(["--config-file", sys.argv[2]], project="spawnapp")
    launcher = service.launch(conf, Greeter(conf), workers=2, start_method=sys.argv[1])
    ev("master", method=launcher._manager.mp_context.get_start_method())  # noqa: SLF001
    launcher.wait()
