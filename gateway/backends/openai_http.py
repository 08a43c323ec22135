"""A backend for any OpenAI-compatible server: vLLM, mlx_lm.server, llama.cpp, another Tandem.

Upstream is always asked to stream with usage; a non-streaming client gets the same stream,
consumed. This module is the one place where client errors and upstream error bodies become
Tandem errors.

It speaks HTTP with aiohttp rather than httpx: on the relay's hot path, reading a streamed chunk
costs several times less CPU with aiohttp's C parser than with httpx's pure-Python h11 (measured;
see the README's performance section).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from pydantic import Field

from gateway.backends import register
from gateway.backends.base import Backend, BackendConfig
from gateway.backends.read_watch import ReadWatch
from gateway.core.context import request_id
from gateway.core.errors import (
    MAX_RETRY_AFTER,
    InvalidRequest,
    RateLimited,
    TandemError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.events import Delta, Event, EventStream, Finish, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from gateway.core.sse_lines import line_batches
from gateway.core.window import check_window, check_window_early

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 4096
RETRY_AFTER_UNAVAILABLE = 5.0


class OpenAIBackendConfig(BackendConfig):
    base_url: str = Field(pattern=r"^https?://")
    model: str
    api_key: str | None = None
    api_key_env: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    pool_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds to get a connection: waiting for a free one in the pool "
        "(max_connections) and connecting",
    )
    read_timeout: float = Field(default=120.0, gt=0)
    total_timeout: float = Field(
        default=900.0, gt=0, description="seconds one upstream call may take, streamed or not"
    )
    health_timeout: float = Field(default=3.0, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    content_types: list[str] = Field(default_factory=lambda: ["text"])
    context_length: int | None = Field(
        default=None, ge=1, description="the model's context window in tokens; unset: unchecked"
    )
    max_token_chars: int = Field(
        default=64,
        ge=1,
        description="characters of the vocabulary's longest token: the gateway has no tokenizer "
        "for an HTTP model, so it checks a lower bound of the prompt's tokens, its characters "
        "over this",
    )


@register("openai")
class OpenAIBackend(Backend):
    kind = "openai"
    Config = OpenAIBackendConfig

    def __init__(self, name: str, config: OpenAIBackendConfig) -> None:
        super().__init__(name, config)
        self.settings = config
        self.content_types = frozenset(config.content_types)
        self._client: aiohttp.ClientSession | None = None

    @property
    def model_id(self) -> str:
        return f"openai:{self.settings.model}"

    @property
    def context_window(self) -> int | None:
        return self.settings.context_length

    @property
    def max_token_chars(self) -> int | None:
        return self.settings.max_token_chars

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        if key is None and self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
        return {"authorization": f"Bearer {key}"} if key else {}

    async def start(self) -> None:
        cfg = self.settings
        self._client = aiohttp.ClientSession(
            base_url=cfg.base_url.rstrip("/") + "/",
            headers=self._headers(),
            # no `total` here: on a stream, ReadWatch holds the deadline at no cost per chunk
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=cfg.pool_timeout,
                sock_connect=cfg.connect_timeout,
                sock_read=cfg.read_timeout,
            ),
            connector=aiohttp.TCPConnector(limit=cfg.max_connections, limit_per_host=0),
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def call_timeout(self) -> aiohttp.ClientTimeout:
        """Every deadline of a call whose answer is read whole (token sessions)."""
        cfg = self.settings
        return aiohttp.ClientTimeout(
            total=cfg.total_timeout,
            connect=cfg.pool_timeout,
            sock_connect=cfg.connect_timeout,
            sock_read=cfg.read_timeout,
        )

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise UpstreamUnavailable(f"backend '{self.name}' is not started")
        return self._client

    async def health(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout)
        try:
            async with self.client.get("models", timeout=timeout) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate_transport_error(self.name, exc) from None
        if status >= 400:
            raise UpstreamUnavailable(f"backend '{self.name}' answered {status} to a health check")

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        if (window := self.settings.context_length) is not None:
            texts = [m.text() for m in request.messages]
            check_window_early(window, texts, self.max_token_chars, request.max_output_tokens or 0)
        payload = upstream_payload(request, self.settings.model)
        payload.pop("max_completion_tokens", None)
        if request.max_output_tokens is not None:
            payload["max_tokens"] = request.max_output_tokens
        return self._stream("chat/completions", payload, chat_events)

    def complete(self, request: CompletionRequest) -> EventStream:
        if (window := self.settings.context_length) is not None:
            for i, prompt in enumerate(request.prompts()):
                if isinstance(prompt, str):
                    check_window_early(
                        window, [prompt], self.max_token_chars, request.max_tokens or 0, i
                    )
                else:
                    check_window(window, len(prompt), request.max_tokens or 0, i)
        payload = upstream_payload(request, self.settings.model)
        return self._stream("completions", payload, completion_events)

    async def _stream(
        self, path: str, payload: dict[str, Any], to_events: ChunkParser
    ) -> EventStream:
        """The upstream's SSE stream as events; its `data:` lines are read here, in one step
        per network read, rather than through a generator of their own."""
        usage: Usage | None = None
        finished: set[int] = set()
        chunks = 0
        done = False
        try:
            async with self._open(path, payload) as response:
                async for lines in line_batches(response):
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # comments and other fields
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            break
                        chunk = _chunk_object(data, self.name)
                        chunks += 1
                        if chunk.get("usage"):
                            usage = parse_usage(chunk["usage"], self.name)
                        for event in _events(to_events, chunk, self.name):
                            if isinstance(event, Finish):
                                finished.add(event.index)
                            yield event
                    if done:
                        await response.content.read()  # to the end: the connection is reused
                        break
            if not finished:
                raise UpstreamBadResponse(
                    f"backend '{self.name}' ended its stream before any choice finished"
                )
        except UpstreamError as exc:
            exc.backend = self.name
            raise
        yield usage or Usage(prompt_tokens=0, completion_tokens=chunks)

    @asynccontextmanager
    async def _open(
        self, path: str, payload: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        headers = {"content-type": "application/json"}
        if (rid := request_id.get()) is not None:
            headers["x-request-id"] = rid
        content = encode_payload(payload)
        deadline = asyncio.get_running_loop().time() + self.settings.total_timeout
        try:
            async with self.client.post(path, data=content, headers=headers) as response:
                if response.status >= 400:
                    body = await response.content.read(MAX_ERROR_BODY)
                    raise translate_status(self.name, response, body)
                watch = ReadWatch(response, self.settings.read_timeout, deadline)
                try:
                    yield response
                finally:
                    watch.cancel()
                    if not response.content.at_eof():
                        response.close()  # the rest is unwanted: drop the connection now
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate_transport_error(self.name, exc) from None


ChunkParser = Any  # Callable[[dict[str, Any]], Iterator[Event]]; kept loose for speed


def upstream_payload(request: SamplingFields, model: str) -> dict[str, Any]:
    payload = request.model_dump(exclude_unset=True, exclude={"tandem", "stream_options"})
    payload["model"] = model
    payload["stream"] = True
    payload["stream_options"] = {"include_usage": True}
    return payload


def encode_payload(payload: dict[str, Any]) -> bytes:
    try:
        # json, not orjson: orjson quietly writes NaN as null, and a client's NaN is an error
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:
        raise InvalidRequest(
            "The request contains a number JSON cannot carry (NaN or Infinity)."
        ) from None


def _chunk_object(payload: bytes, backend: str) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"backend '{backend}' sent a chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise UpstreamBadResponse(f"backend '{backend}' sent a chunk that is not an object")
    if "error" in chunk or chunk.get("object") == "error":
        raise UpstreamBadResponse(f"backend '{backend}' failed: {in_band_message(chunk, backend)}")
    return chunk


def _events(to_events: ChunkParser, chunk: dict[str, Any], backend: str) -> list[Event]:
    try:
        return to_events(chunk)  # type: ignore[no-any-return]
    except (AttributeError, TypeError, ValueError):
        log.warning("backend %s sent a malformed choice: %.300r", backend, chunk)
        raise UpstreamBadResponse(f"backend '{backend}' sent a malformed choice") from None


def _checked(index: Any, *texts: Any) -> None:
    """Raise TypeError unless `index` is an int and each text a string or None: a chunk is
    relayed field by field, and a wrong type would fail later, where it is a 500."""
    if type(index) is not int:
        raise TypeError("index")
    for text in texts:
        if text is not None and type(text) is not str:
            raise TypeError("text")


def _wire_shapes(tool_calls: Any, logprobs: Any) -> None:
    if tool_calls is not None and not (
        type(tool_calls) is list
        and all(type(c) is dict and type(c.get("function") or {}) is dict for c in tool_calls)
    ):
        raise TypeError("tool_calls")
    if logprobs is not None and type(logprobs) is not dict:
        raise TypeError("logprobs")


def chat_events(chunk: dict[str, Any]) -> list[Event]:
    """Raises TypeError or AttributeError for a chunk of the wrong shape."""
    events: list[Event] = []
    for choice in _choice_list(chunk):
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        tool_calls = delta.get("tool_calls")
        logprobs = choice.get("logprobs")
        _checked(index, text, reasoning, choice.get("finish_reason"))
        if tool_calls is not None or logprobs is not None:
            _wire_shapes(tool_calls, logprobs)
        if text or reasoning or tool_calls or logprobs:
            events.append(Delta(index, text, "main", reasoning, tool_calls, logprobs))
        if choice.get("finish_reason"):
            events.append(Finish(index, choice["finish_reason"]))
    return events


def completion_events(chunk: dict[str, Any]) -> list[Event]:
    """Raises TypeError or AttributeError for a chunk of the wrong shape."""
    events: list[Event] = []
    for choice in _choice_list(chunk):
        index = choice.get("index", 0)
        text = choice.get("text") or ""
        logprobs = choice.get("logprobs")
        _checked(index, text, choice.get("finish_reason"))
        if logprobs is not None:
            _wire_shapes(None, logprobs)
        if text or logprobs:
            events.append(Delta(index, text, "main", logprobs=logprobs))
        if choice.get("finish_reason"):
            events.append(Finish(index, choice["finish_reason"]))
    return events


def _choice_list(chunk: dict[str, Any]) -> list[Any]:
    choices = chunk.get("choices") or []
    if type(choices) is not list:
        raise TypeError("choices")
    return choices


def parse_usage(raw: Any, backend: str) -> Usage:
    try:
        extra = {k: v for k, v in raw.items() if k.endswith("_details") and v}
        return Usage(int(raw["prompt_tokens"]), int(raw["completion_tokens"]), extra or None)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UpstreamBadResponse(f"backend '{backend}' sent malformed usage") from None


def error_message(body: Any) -> str:
    """The message of any of the error shapes upstream servers use."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
            if message:
                return str(message)[:500]
        elif isinstance(inner, str):
            return inner[:500]
        if "detail" in body:
            return str(body["detail"])[:500]
    return "no detail given"


def in_band_message(chunk: dict[str, Any], backend: str) -> str:
    """An error sent inside a stream: its message when the upstream says it is the client's
    (a 4xx code), else a generic one, the detail logged (it may name the upstream's internals)."""
    inner = chunk.get("error")
    code = inner.get("code") if isinstance(inner, dict) else None
    message = error_message(chunk)
    if type(code) is int and 400 <= code < 500:
        return message
    log.warning("backend %s failed in its stream: %r", backend, message)
    return "the model server had an error"


def translate_status(backend: str, response: aiohttp.ClientResponse, body: bytes) -> TandemError:
    """An upstream's 4xx message is the client's to read; a 5xx's detail is only logged."""
    status = response.status
    try:
        message = error_message(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = body.decode("utf-8", "replace").strip()[:500] or "no detail given"
    retry_after = _retry_after(response)
    if status >= 500:
        log.warning("backend %s answered %s: %r", backend, status, message)
    if status in (400, 413, 422):
        return InvalidRequest(f"backend '{backend}' rejected the request: {message}")
    if status == 429:
        return RateLimited(f"backend '{backend}' is rate limited", retry_after=retry_after or 1)
    if status in (401, 403):
        log.warning("backend %s refused the gateway's credentials (%s)", backend, status)
        return UpstreamBadResponse(f"backend '{backend}' refused the gateway's credentials")
    if status in (502, 503, 504):
        return UpstreamUnavailable(
            f"backend '{backend}' is unavailable ({status})",
            retry_after=retry_after or RETRY_AFTER_UNAVAILABLE,
        )
    if status >= 500:
        return UpstreamBadResponse(f"backend '{backend}' failed with status {status}")
    return UpstreamBadResponse(f"backend '{backend}' failed with status {status}: {message}")


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds from a Retry-After header, within [0, MAX_RETRY_AFTER]; None when absent or not
    a number (an HTTP date, `inf` and `nan` included)."""
    try:
        seconds = float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None if math.isnan(seconds) else MAX_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def translate_transport_error(backend: str, exc: BaseException) -> UpstreamError:
    log.warning("backend %s: %s", backend, type(exc).__name__)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamUnavailable(
            f"backend '{backend}' did not accept a connection in time",
            retry_after=RETRY_AFTER_UNAVAILABLE,
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"backend '{backend}' did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(
            f"backend '{backend}' is unreachable", retry_after=RETRY_AFTER_UNAVAILABLE
        )
    return UpstreamBadResponse(f"backend '{backend}' closed the connection unexpectedly")
