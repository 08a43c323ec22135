"""The ASGI response that carries an SSE stream to the client.

Each chunk costs one `send`: no per-chunk cancel scope, lock or timer. One watcher per stream
listens for the client's disconnect (which cancels the stream, and so the policy and its upstream
calls) and writes a keep-alive comment when the stream has been idle for `ping_seconds`, so
proxies do not cut a stream whose model is still thinking. On shutdown, the server waits for
streams to finish up to its graceful-shutdown deadline, then cancels them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

# The app (gateway/server/app.py) leaves the server's own `send` here: once a response has
# started, its body messages need none of the wrappers between the server and the endpoint,
# which only watch for the start, and a stream sends every chunk.
BODY_SEND = "tandem.body_send"

PING = b": ping\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse(Response):
    """A `Response` so that FastAPI hands it to the server as is."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncGenerator[bytes, None], ping_seconds: float = 15.0) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)
        self.stream = body
        self.ping_seconds = ping_seconds
        self._last_sent = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # the server's own `send`: every chunk skips the wrappers that only watch for the start
        body_send: Send = scope.get("state", {}).get(BODY_SEND, send)
        loop = asyncio.get_running_loop()
        if not await self._send_first(body_send):
            return
        self._last_sent = loop.time()
        sender = asyncio.ensure_future(self._send_all(body_send, loop))
        try:
            await self._watch(receive, body_send, sender, loop)
        finally:
            if not sender.done():
                sender.cancel()
            with suppress(asyncio.CancelledError, OSError):
                await sender

    async def _send_first(self, send: Send) -> bool:
        """The body's first chunk, sent here rather than one turn of the event loop later in
        the sender's task: on the time to first token. It is ready (the policy's first event
        was awaited before the response was made), so no disconnect needs watching yet. False
        when the client's connection is gone (the sender's own `OSError` ends it quietly too)."""
        try:
            chunk = await anext(self.stream, None)
            if chunk is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            await self.stream.aclose()
            return False
        except BaseException:
            await self.stream.aclose()
            raise
        return True

    async def _send_all(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        try:
            async for chunk in self.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._last_sent = loop.time()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.stream.aclose()

    async def _watch(
        self,
        receive: Receive,
        send: Send,
        sender: asyncio.Future[None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Until the stream ends: stop it if the client leaves, ping it when idle."""
        listener: asyncio.Future[Message] = asyncio.ensure_future(receive())
        try:
            while not sender.done():
                pending: set[asyncio.Future[Any]] = {sender, listener}
                await asyncio.wait(
                    pending,
                    timeout=self.ping_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if listener.done():
                    if listener.result()["type"] == "http.disconnect":
                        sender.cancel()
                        return
                    listener = asyncio.ensure_future(receive())
                elif not sender.done() and loop.time() - self._last_sent >= self.ping_seconds:
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                    self._last_sent = loop.time()
        finally:
            listener.cancel()
