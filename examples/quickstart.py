"""Cotyledon quickstart: a service with two workers.

Run it, then stop it with Ctrl-C (instantaneous exit) or
``kill -TERM <master pid>`` (graceful: each worker's terminate() runs).
"""

import logging
import os
import threading
import time

import cotyledon

LOG = logging.getLogger(__name__)


class MyService(cotyledon.Service):
    name = "my_example_service"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        self._shutdown = threading.Event()
        LOG.info(f"[{os.getpid()}] {self.name} worker {self.worker_id} init")

    def run(self):
        LOG.info(f"[{os.getpid()}] {self.name} worker {self.worker_id} running...")
        # A real service would do its work here (consume a queue, ...).
        while not self._shutdown.is_set():
            LOG.debug(f"[{os.getpid()}] {self.name} worker {self.worker_id} working...")
            time.sleep(1)

    def terminate(self):
        LOG.info(f"[{os.getpid()}] {self.name} worker {self.worker_id} terminating...")
        self._shutdown.set()

    def reload(self):
        LOG.info(f"[{os.getpid()}] {self.name} worker {self.worker_id} reloading...")


def main():
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s - %(process)d - %(levelname)s - %(message)s",
    )
    LOG.info("Starting Cotyledon Service Manager")
    manager = cotyledon.ServiceManager()
    manager.add(MyService, workers=2)
    manager.run()
    LOG.info("Cotyledon Service Manager stopped.")


if __name__ == "__main__":
    main()
