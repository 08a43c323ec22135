"""A TCP proxy on loopback that adds a round trip: a network between Tandem and a model server.

Every byte is held `rtt / 2` seconds in each direction, in order, without limiting bandwidth:
the latency of a real link, so that a request/response exchange costs one `rtt` more. `rtt`
may be changed while connections are open (a benchmark sweeps it over pooled connections). Tests and
benchmarks (benchmarks/collab_rtt.py) put it between the gateway and an upstream:

    with DelayProxy("127.0.0.1", upstream_port, rtt=0.05) as proxy:
        base_url = f"http://127.0.0.1:{proxy.port}/v1"

It runs its own event loop in a thread, so it serves a synchronous test as well as an async one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import suppress
from types import TracebackType

CHUNK = 65536


class DelayProxy:
    def __init__(self, host: str, port: int, rtt: float) -> None:
        self.target = (host, port)
        self.rtt = rtt
        self.port = 0
        self.connections = 0
        self.requests = 0  # HTTP requests seen going upstream (request lines that start a read)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        # ended, not cancelled, at shutdown: asyncio's stream callback reads a cancelled
        # connection task's exception and logs the CancelledError
        with suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(client_r, server_w, upstream=True),
                self._pipe(server_r, client_w),
                return_exceptions=True,
            )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool = False
    ) -> None:
        """Bytes from `reader` reach `writer` half a round trip after they arrived, in order:
        a reader task stamps them, a writer task releases them when their time comes."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while data := await reader.read(CHUNK):
                if upstream:
                    self.requests += data.count(b" HTTP/1.1\r\n")
                queue.put_nowait((time.monotonic() + self.rtt / 2, data))
            queue.put_nowait((time.monotonic() + self.rtt / 2, b""))

        async def write() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        reading = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reading.cancel()
            with suppress(Exception):
                writer.close()
