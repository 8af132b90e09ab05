"""Services started by the runner in test_runner.py
(``cotyledon-run runner_services:Hello=3 ...``, from this directory).

They log ``INFO:app:EV <event> key=value ...`` lines with app.py's ev(): the
import of app.py sets logging up (stdout, DEBUG) before the runner does,
so its own set-up changes nothing.
"""

from __future__ import annotations

import time

from app import Basic, ev


class Hello(Basic):
    """Built as Hello(worker_id): its init event says tag=none."""

    name = "hello"


class Other(Basic):
    name = "other"


class Stubborn(Basic):
    """terminate() never ends: --graceful-timeout ends the worker."""

    name = "stubborn"

    def terminate(self):
        ev("terminate", name=self.name, wid=self.worker_id)
        time.sleep(3600)


class Configured(Basic):
    """Built as Configured(worker_id, conf) with --config-file."""

    name = "configured"

    def __init__(self, worker_id, conf):
        from oslo_config import cfg

        conf.register_opts([cfg.StrOpt("greeting", default="none", mutable=True)])
        self.conf = conf
        super().__init__(worker_id, tag="conf")
        ev(
            "conf",
            wid=worker_id,
            type=type(conf).__name__,
            greeting=conf.greeting,
            gst=conf.graceful_shutdown_timeout,
        )

    def reload(self):
        ev("reload", wid=self.worker_id, greeting=self.conf.greeting)


NOT_A_CLASS = 42
