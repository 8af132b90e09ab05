"""asyncio services of the scenario tests: ``python aio.py SCENARIO``.

Logs ``INFO:app:EV <event> key=value ...`` lines as app.py does. asyncio is
imported inside the services' methods only: a plain service's worker can
then tell whether cotyledon itself imported it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import cotyledon
from app import ev  # the same logging set-up and EV lines


def answer(tag: bytes) -> bytes:
    """The full answer to request ``tag`` (test_asyncio.py checks it): about
    4 MB, far more than the socket buffers hold."""
    return (tag + b":" + b"x" * 1000 + b"\n") * 4096


class TcpServer(cotyledon.Service):
    """A request is ``<tag>\\n``, then ``GO\\n`` when the client wants its
    answer; terminate() stops accepting and finishes the requests in flight."""

    name = "tcp"

    def __init__(self, worker_id, listener):
        super().__init__(worker_id)
        self._listener = listener
        self._in_flight = set()

    async def run(self):
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._server = await asyncio.start_server(self._handle, sock=self._listener)
        ev("listening", wid=self.worker_id)
        await asyncio.Event().wait()  # until cancelled, after terminate()

    async def _handle(self, reader, writer):
        import asyncio

        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            tag = (await reader.readline()).strip()
            ev("request", wid=self.worker_id, tag=tag.decode())
            if await reader.readline() == b"GO\n":
                writer.write(answer(tag))
                await writer.drain()
                ev("answered", wid=self.worker_id, tag=tag.decode())
        finally:
            writer.close()
            self._in_flight.discard(task)

    async def terminate(self):
        import asyncio

        ev(
            "terminate",
            wid=self.worker_id,
            in_flight=len(self._in_flight),
            same_loop=asyncio.get_running_loop() is self._loop,
            loop_thread=threading.get_ident() == self._loop_thread,
        )
        self._server.close()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        ev("terminated", wid=self.worker_id)

    async def reload(self):
        import asyncio

        await asyncio.sleep(0)
        ev(
            "reload",
            wid=self.worker_id,
            same_loop=asyncio.get_running_loop() is self._loop,
            loop_thread=threading.get_ident() == self._loop_thread,
        )


class Mixed(cotyledon.Service):
    """A plain run() (a thread) with async reload() and terminate()."""

    name = "mixed"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        self._stop = threading.Event()

    def run(self):
        ev("run", name=self.name, wid=self.worker_id)
        self._stop.wait()

    async def reload(self):
        import asyncio

        await asyncio.sleep(0)
        ev("reload", name=self.name, wid=self.worker_id)

    async def terminate(self):
        import asyncio

        await asyncio.sleep(0)
        ev("terminate", name=self.name, wid=self.worker_id)
        self._stop.set()


class Plain(cotyledon.Service):
    name = "plain"

    def __init__(self, worker_id):
        super().__init__(worker_id)
        self._stop = threading.Event()

    def run(self):
        ev("run", name=self.name, wid=self.worker_id, asyncio="asyncio" in sys.modules)
        self._stop.wait()

    def terminate(self):
        self._stop.set()


class Cleanup(cotyledon.Service):
    """Leaves a task, an async generator and a default-executor job behind;
    its run() never returns and it has no terminate()."""

    name = "cleanup"

    async def run(self):
        import asyncio

        loop = asyncio.get_running_loop()
        released = threading.Event()

        async def numbers():
            try:
                yield 1
                await asyncio.sleep(3600)
            finally:
                ev("agen_closed")
                released.set()

        async def background():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                ev("task_cancelled")
                raise

        def job():
            # Ends only once the loop's shutdown closed the generator;
            # then takes a moment: nothing but the executor's shutdown
            # waits for it.
            released.wait(60)
            time.sleep(0.3)
            ev("executor_job_done")

        self._numbers = numbers()
        await self._numbers.__anext__()
        self._background = asyncio.ensure_future(background())
        loop.run_in_executor(None, job)
        ev("running", wid=self.worker_id)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ev("run_cancelled")
            raise


class Crash(cotyledon.Service):
    """async run() raises: as a plain run(), logged, status 2."""

    name = "crash"

    async def run(self):
        ev("crash", wid=self.worker_id)
        raise ValueError("async boom")


def on_dead_worker(service_id, worker_id, exit_code):
    ev("dead", wid=worker_id, code=exit_code)


def scenario_tcp(argv):
    """4 workers of TcpServer on a listener made here, inherited; plus one
    Mixed and one Plain worker."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    ev("port", port=listener.getsockname()[1])
    manager = cotyledon.ServiceManager()
    manager.add(TcpServer, workers=4, args=(listener,))
    manager.add(Mixed, workers=1)
    manager.add(Plain, workers=1)
    manager.register_hooks(on_dead_worker=on_dead_worker)
    manager.run()


def scenario_cleanup(argv):
    manager = cotyledon.ServiceManager()
    manager.add(Cleanup, workers=1)
    manager.register_hooks(on_dead_worker=on_dead_worker)
    manager.run()


def scenario_crash(argv):
    manager = cotyledon.ServiceManager()
    manager.add(Crash, workers=1)
    manager.register_hooks(on_dead_worker=on_dead_worker)
    manager.run()


if __name__ == "__main__":
    globals()["scenario_" + sys.argv[1]](sys.argv[2:])
