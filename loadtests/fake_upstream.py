"""A fake OpenAI-compatible upstream: a real HTTP server with scripted timing and failures.

Behaviour comes from `FakeConfig`, overridable per request by a `fake` object in the request
body (Tandem's `direct` policy passes unknown fields on, so a test can script one request):
`{"fake": {"mode": "close_mid", "chunks": 5}}`. Every request is recorded, including whether the
client went away before the answer was complete.

Modes: `ok`; `tools` (streams one tool call in fragments); `error` (status + body in an
OpenAI, vLLM or plain-text shape); `hang` (never answers); `close_mid` (drops the connection
after `close_after` chunks); `stall_mid` (stops sending, connection open, after `close_after`
chunks); `error_in_stream` (an in-band error event, code `error_status`, after `close_after`
chunks); `bad_choices` (a chunk whose `choices` is `bad_choices`, then `[DONE]`). With
`fail_rate` > 0 that share of requests, drawn at random, answers as `error` does. `retry_after`
is sent as the `Retry-After` header of an `error` answer.

Run alone: `python -m loadtests.fake_upstream --port 9000 --ttft 0.02 --itl 0.01 --chunks 64`
(`--tps 100` sets the ITL from tokens per second; `--no-record` keeps memory flat in long runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

TOOL_CALL_FRAGMENTS = [
    {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    },
    {"index": 0, "function": {"arguments": '{"city": '}},
    {"index": 0, "function": {"arguments": '"Paris"}'}},
]


@dataclass(frozen=True)
class FakeConfig:
    ttft: float = 0.0
    itl: float = 0.0
    chunks: int = 8
    mode: str = "ok"
    close_after: int = 2
    error_status: int = 500
    error_shape: str = "openai"  # openai | vllm | text
    error_message: str = "scripted failure"
    send_usage: bool = True
    comments: bool = False
    fail_rate: float = 0.0
    retry_after: str | None = None
    bad_choices: Any = None
    set_cookie: str | None = None  # a Set-Cookie header on the answer


@dataclass
class Record:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    completed: bool = False
    disconnected: bool = False
    ended: float | None = None

    def wait_ended(self, within: float = 5.0) -> None:
        """Until the server has finished with this request (it notices a client that went away
        on its own thread), or `within` seconds have passed."""
        deadline = time.monotonic() + within
        while self.ended is None and time.monotonic() < deadline:
            time.sleep(0.01)


def words(n: int, offset: int = 0) -> list[str]:
    return [("" if i == 0 else " ") + f"w{i + offset}" for i in range(n)]


def count_prompt(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return len(str(body.get("prompt", "")).split())


def error_body(config: FakeConfig) -> Response:
    message = config.error_message
    headers = {} if config.retry_after is None else {"retry-after": config.retry_after}
    if config.error_shape == "text":
        return PlainTextResponse(message, status_code=config.error_status, headers=headers)
    if config.error_shape == "vllm":
        payload: dict[str, Any] = {
            "object": "error",
            "message": message,
            "type": "BadRequest",
            "code": config.error_status,
        }
    else:
        payload = {"error": {"message": message, "type": "server_error", "code": None}}
    return JSONResponse(payload, status_code=config.error_status, headers=headers)


class FakeUpstream:
    def __init__(
        self, config: FakeConfig | None = None, record: bool = True, seed: int = 0
    ) -> None:
        self.config = config or FakeConfig()
        self.records: list[Record] = []
        self.record = record
        self._random = random.Random(seed)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._handle, methods=["POST"]),
                Route("/v1/completions", self._handle, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),  # as vLLM's server has
            ]
        )

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    def _config_for(self, body: dict[str, Any]) -> FakeConfig:
        override = body.get("fake") or {}
        known = {f.name for f in fields(FakeConfig)}
        return replace(self.config, **{k: v for k, v in override.items() if k in known})

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        record = Record(request.url.path, body, dict(request.headers))
        if self.record:
            self.records.append(record)
        config = self._config_for(body)
        if config.fail_rate and self._random.random() < config.fail_rate:
            config = replace(config, mode="error")
        if config.mode == "error":
            record.completed = True
            return error_body(config)
        if config.mode == "hang":
            return StreamingResponse(self._hang(record), media_type="text/event-stream")
        chat = request.url.path.endswith("chat/completions")
        if config.mode == "bad_choices" and not body.get("stream"):
            record.completed = True
            return JSONResponse({"id": "fake-1", "choices": config.bad_choices})
        response: Response
        if body.get("stream"):
            response = StreamingResponse(
                self._stream(record, config, chat), media_type="text/event-stream"
            )
        else:
            response = JSONResponse(await self._whole(record, config, chat))
        if config.set_cookie:
            response.headers.append("set-cookie", config.set_cookie)
        return response

    async def _hang(self, record: Record) -> AsyncIterator[bytes]:
        try:
            await asyncio.sleep(3600)
            yield b""
        finally:
            record.disconnected = True
            record.ended = time.monotonic()

    def _choice(self, chat: bool, index: int, text: str, finish: str | None) -> dict[str, Any]:
        if chat:
            delta = {"content": text} if text or finish is None else {}
            return {"index": index, "delta": delta, "finish_reason": finish}
        return {"index": index, "text": text, "finish_reason": finish}

    async def _stream(self, record: Record, config: FakeConfig, chat: bool) -> AsyncIterator[bytes]:
        body = record.body
        n = int(body.get("n") or 1)
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": "fake-1", "object": obj, "created": int(time.time()), "model": body["model"]}

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps({**head, **payload}).encode() + b"\n\n"

        try:
            await asyncio.sleep(config.ttft)
            if chat:
                yield event(
                    {
                        "choices": [
                            {"index": i, "delta": {"role": "assistant"}, "finish_reason": None}
                            for i in range(n)
                        ]
                    }
                )
            if config.mode == "bad_choices":
                yield event({"choices": config.bad_choices})
                yield b"data: [DONE]\n\n"
                return
            if config.mode == "tools":
                for fragment in TOOL_CALL_FRAGMENTS:
                    yield event(
                        {
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"tool_calls": [fragment]},
                                    "finish_reason": None,
                                }
                            ]
                        }
                    )
                yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                yield b"data: [DONE]\n\n"
                record.completed = True
                return
            for k, word in enumerate(words(config.chunks)):
                if k and config.itl:
                    await asyncio.sleep(config.itl)
                if config.mode == "stall_mid" and k == config.close_after:
                    await asyncio.sleep(3600)
                if config.mode in ("close_mid", "error_in_stream") and k == config.close_after:
                    if config.mode == "error_in_stream":
                        error = {"message": config.error_message, "code": config.error_status}
                        yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                        break
                    raise ConnectionAbortedError("scripted mid-stream close")
                if config.comments:
                    yield b": keep-alive\n\n"
                yield event({"choices": [self._choice(chat, i, word, None) for i in range(n)]})
            else:
                yield event({"choices": [self._choice(chat, i, "", "length") for i in range(n)]})
                if config.send_usage and (body.get("stream_options") or {}).get("include_usage"):
                    usage = {
                        "prompt_tokens": count_prompt(body),
                        "completion_tokens": config.chunks * n,
                        "total_tokens": count_prompt(body) + config.chunks * n,
                    }
                    yield event({"choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
            record.completed = True
        finally:
            record.disconnected = not record.completed
            record.ended = time.monotonic()

    async def _whole(self, record: Record, config: FakeConfig, chat: bool) -> dict[str, Any]:
        await asyncio.sleep(config.ttft + config.itl * max(config.chunks - 1, 0))
        n = int(record.body.get("n") or 1)
        text = "".join(words(config.chunks))
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                }
                for i in range(n)
            ]
        else:
            choices = [{"index": i, "text": text, "finish_reason": "length"} for i in range(n)]
        record.completed = True
        prompt = count_prompt(record.body)
        return {
            "id": "fake-1",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": record.body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": config.chunks * n,
                "total_tokens": prompt + config.chunks * n,
            },
        }


class ServerThread:
    """An ASGI app served by uvicorn on loopback in a background thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--ttft", type=float, default=0.02)
    parser.add_argument("--itl", type=float, default=0.01)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--tps", type=float, help="tokens per second (overrides --itl)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share answered with 500")
    parser.add_argument("--no-record", action="store_true", help="keep no request records")
    args = parser.parse_args()
    itl = 1 / args.tps if args.tps else args.itl
    config = FakeConfig(ttft=args.ttft, itl=itl, chunks=args.chunks, fail_rate=args.fail_rate)
    fake = FakeUpstream(config, record=not args.no_record)
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
