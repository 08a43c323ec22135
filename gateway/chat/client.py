"""The HTTP side of `tandem chat`: the models list and streamed chat completions, read with
aiohttp through the standard OpenAI API plus Tandem's provenance extension (no private routes).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.core.sse_lines import line_batches

CONNECT_TIMEOUT = 10.0
# a plan phase or a slow large model can keep a stream quiet; Tandem pings every 15 s meanwhile
READ_TIMEOUT = 600.0
MAX_ERROR_BODY = 64 * 1024


class ChatError(Exception):
    """A failure the chat shows as one line before it goes on."""


class Unreachable(ChatError):
    def __init__(self, url: str) -> None:
        super().__init__(f"cannot reach {url}: is Tandem running? (try --serve)")


class HTTPError(ChatError):
    """Tandem answered with an error status and its `{"error": {...}}` envelope."""

    def __init__(self, status: int, body: bytes) -> None:
        message, code = error_fields(body)
        self.status = status
        self.code = code
        super().__init__(f"HTTP {status}{f' ({code})' if code else ''}: {message}")


class StreamError(ChatError):
    """The stream started, then failed: an in-band error, a dropped connection, a bad chunk."""


@dataclass(frozen=True, slots=True)
class Alias:
    id: str
    policy: str


@dataclass(frozen=True, slots=True)
class Piece:
    """Text one model wrote: answer content, or HAWKEYE's plan (`reasoning_content`)."""

    text: str
    source: str
    reasoning: bool = False


@dataclass(slots=True)
class Answer:
    """What one streamed response said, and when."""

    content: str = ""
    reasoning: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    pieces: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    ended: float | None = None

    def absorb(self, chunk: dict[str, Any]) -> list[Piece]:
        """The pieces of choice 0 in one chunk; the report and usage are kept as they pass."""
        if isinstance(chunk.get("tandem"), dict):
            self.report = chunk["tandem"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        pieces: list[Piece] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            source = str((choice.get("tandem") or {}).get("source", "main"))
            if reasoning := delta.get("reasoning_content"):
                pieces.append(Piece(str(reasoning), source, reasoning=True))
                self.reasoning += str(reasoning)
            if content := delta.get("content"):
                pieces.append(Piece(str(content), source))
                self.content += str(content)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        if pieces and self.first_token is None:
            self.first_token = time.perf_counter()
        self.pieces += len(pieces)
        return pieces


def error_fields(body: bytes) -> tuple[str, str | None]:
    """The message and code of an error envelope, or the body's text when it is not one."""
    try:
        inner = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        inner = None
    if isinstance(inner, dict) and inner.get("message"):
        code = inner.get("code") or inner.get("type")
        return str(inner["message"]), str(code) if code else None
    text = body.decode("utf-8", "replace").strip()
    return (text[:500] or "no detail given"), None


async def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event; comments (`: ping`) and other fields are skipped."""
    data: list[bytes] = []
    async for lines in line_batches(response):
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
    if data:
        yield b"\n".join(data)


def decode_chunk(data: bytes) -> dict[str, Any]:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StreamError("Tandem sent a chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise StreamError("Tandem sent a chunk that is not a JSON object")
    if "error" in chunk:
        message, code = error_fields(data)
        raise StreamError(f"the answer failed{f' ({code})' if code else ''}: {message}")
    return chunk


class ChatClient:
    """One aiohttp session to one Tandem base URL (`.../v1`)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        )
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def models(self) -> list[Alias]:
        """The aliases `GET /models` lists, in its order."""
        async with self._request("GET", "/models") as response:
            body = await response.read()
        try:
            cards = orjson.loads(body)["data"]
            return [
                Alias(str(c["id"]), str((c.get("tandem") or {}).get("policy", ""))) for c in cards
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ChatError(f"{self.url}/models did not answer with a model list") from None

    async def chat(self, body: dict[str, Any], answer: Answer) -> AsyncGenerator[Piece, None]:
        """Stream one chat completion: yields each piece as it arrives, fills `answer`."""
        async with self._request("POST", "/chat/completions", body) as response:
            try:
                async for data in sse_data(response):
                    if data == b"[DONE]":
                        answer.ended = time.perf_counter()
                        await response.content.read()  # to the body's end: the connection is reused
                        return
                    for piece in answer.absorb(decode_chunk(data)):
                        yield piece
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise StreamError(f"the stream broke off: {describe(exc)}") from None
        raise StreamError("the stream ended before [DONE]: the connection closed")

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        assert self._session is not None, "ChatClient.open() first"
        data = None if body is None else orjson.dumps(body)
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            request = self._session.request(method, self.url + path, data=data, headers=headers)
            async with request as response:
                if response.status >= 400:
                    raise HTTPError(response.status, await read_some(response, MAX_ERROR_BODY))
                try:
                    yield response
                finally:
                    if not response.content.at_eof():
                        response.close()  # a stopped answer: drop the connection, which ends it
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise Unreachable(self.url) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatError(f"{method} {self.url}{path} failed: {describe(exc)}") from None


async def read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to `limit` bytes (`content.read(n)` may stop at the first chunk)."""
    body = b""
    while len(body) < limit and (chunk := await response.content.read(limit - len(body))):
        body += chunk
    return body


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READ_TIMEOUT:.0f} s"
    return str(exc) or type(exc).__name__
