"""The floor of a Python relay: uvicorn and aiohttp with nothing of Tandem between them.

`python -m loadtests.compare --targets direct floor tandem` runs it as the `floor` target, in
Tandem's environment (the same uvicorn, uvloop, httptools and aiohttp), pinned to the gateway's
core. It reads the request body, posts it to the upstream as it is and passes the upstream's
bytes back as they arrive: no validation, keys, limits, policy, events, metrics or logs. It
schedules Python's collector as Tandem does (gateway/observability/collector.py), whose pauses
would otherwise be most of its tail. What it adds to the direct path is what the HTTP stack
alone costs, the level under which no work in Tandem's own code can bring Tandem's relay.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.core.config import Settings
from gateway.observability.collector import Collector

STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
JSON_HEADERS = [(b"content-type", b"application/json")]


class FloorRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self.collector = Collector(Settings.model_fields["gc_interval_seconds"].default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.relay(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # as Tandem's backends do: no pool limit below the load, no cookies kept
                connector = aiohttp.TCPConnector(limit=0)
                self.session = aiohttp.ClientSession(
                    connector=connector, cookie_jar=aiohttp.DummyCookieJar()
                )
                self.collector.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.collector.stop()
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        body = await read_body(receive)
        url = self.upstream + scope["path"].removeprefix("/v1")
        method = scope["method"]
        async with self.session.request(method, url, data=body or None) as upstream:
            kind = upstream.headers.get("content-type", "")
            headers = STREAM_HEADERS if kind.startswith("text/event-stream") else JSON_HEADERS
            start: dict[str, Any] = {"type": "http.response.start", "headers": headers}
            await send({**start, "status": upstream.status})
            async for data in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, .../v1")
    args = parser.parse_args(argv)
    app = FloorRelay(args.upstream)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
