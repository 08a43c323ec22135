"""The floor of a Python relay: uvicorn and aiohttp with nothing of Tandem between them.

`python -m loadtests.compare --targets direct floor tandem` runs it as the `floor` target, in
Tandem's environment (the same uvicorn, uvloop, httptools and aiohttp), pinned to the gateway's
core. It reads the request body as Tandem's gate does (`gate.read_body`, at the default size
limit), posts it to the upstream as it is and passes the upstream's bytes back as they arrive:
no validation, keys, rate limits, policy, events, metrics or logs. It schedules Python's
collector as Tandem does (gateway/observability/collector.py), whose pauses would otherwise be
most of its tail. What it adds to the direct path is what the HTTP stack alone costs, the level
under which no work in Tandem's own code can bring Tandem's relay.
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.api.gate import read_body
from gateway.backends.openai_http import OpenAIBackendConfig
from gateway.core.config import Settings
from gateway.observability.collector import Collector

STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
JSON_HEADERS = [(b"content-type", b"application/json")]


class FloorRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        defaults = Settings.model_fields
        self.collector = Collector(defaults["gc_interval_seconds"].default)
        self.body_limit: int = defaults["max_body_bytes"].default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.relay(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # as Tandem's backends do: their default pool size, no cookies kept
                pool = OpenAIBackendConfig.model_fields["max_connections"].default
                connector = aiohttp.TCPConnector(limit=pool)
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
        body = await read_body(scope, receive, self.body_limit)
        url = self.upstream + scope["path"].removeprefix("/v1")
        method = scope["method"]
        async with self.session.request(method, url, data=body or None) as upstream:
            kind = upstream.headers.get("content-type", "")
            headers = STREAM_HEADERS if kind.startswith("text/event-stream") else JSON_HEADERS
            status = upstream.status
            await send({"type": "http.response.start", "status": status, "headers": headers})
            async for data in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, .../v1")
    args = parser.parse_args(argv)
    app = FloorRelay(args.upstream)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
