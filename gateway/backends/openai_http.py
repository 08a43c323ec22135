"""A backend for any OpenAI-compatible server: vLLM, mlx_lm.server, llama.cpp, another Tandem.

Upstream is always asked to stream with usage; a non-streaming client gets the same stream,
consumed. What upstream sends is read into events and errors in `gateway.backends.openai_wire`,
the one place where upstream error bodies become Tandem errors.

It speaks HTTP with aiohttp rather than httpx: on the relay's hot path, reading a streamed chunk
costs several times less CPU with aiohttp's C parser than with httpx's pure-Python h11 (measured;
see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, ValidationInfo, field_validator

from gateway.backends import register
from gateway.backends.base import Backend, BackendConfig, ReplicaState
from gateway.backends.openai_wire import (
    MAX_ERROR_BODY,
    ChunkParser,
    chat_events,
    chunk_events,
    chunk_object,
    completion_events,
    parse_usage,
    translate_status,
    translate_transport_error,
)
from gateway.backends.read_watch import ReadWatch
from gateway.backends.replicas import Replica, ReplicaSet, address
from gateway.core.context import request_id
from gateway.core.errors import (
    InvalidRequest,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.core.events import EventStream, Finish, Usage
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChatName
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from gateway.core.sse_lines import line_batches
from gateway.core.window import check_window, check_window_early
from gateway.observability.tracing import upstream_call

log = logging.getLogger(__name__)
#: headers every call sets: a session header may not replace one
RESERVED_HEADERS = frozenset(
    {"authorization", "content-type", "content-length", "host", "x-request-id", "traceparent"}
)
MAX_REPLICAS = 16
HttpUrl = Annotated[str, Field(pattern=r"^https?://")]


class OpenAIBackendConfig(BackendConfig):
    base_url: HttpUrl | None = None
    base_urls: list[HttpUrl] | None = Field(
        default=None,
        validate_default=True,
        min_length=1,
        max_length=MAX_REPLICAS,
        description="replicas of one model, instead of `base_url`, for a setup without a "
        "router: token sessions stick to one by their key, whole requests go to the one "
        "with the fewest outstanding, a dead one fails over (gateway/backends/replicas.py)",
    )
    replica_cooldown: float = Field(
        default=10.0,
        gt=0,
        description="seconds a replica whose call failed to connect is left out before it "
        "is tried again (unless a health check finds it up sooner)",
    )
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
    keepalive_seconds: float = Field(
        default=4.0,
        gt=0,
        description="how long an idle pooled connection is reused: below the server's own "
        "keep-alive (uvicorn's, so vLLM's and Tandem's, is 5 s), or a reused connection may "
        "already be closed by the server",
    )
    content_types: list[str] = Field(default_factory=lambda: ["text"])
    context_length: int | None = Field(
        default=None, ge=1, description="the model's context window in tokens; unset: unchecked"
    )
    tokenizer: str | None = Field(
        default=None,
        description="the served model's tokenizer (a packaged name, a folder or a hub id), for a "
        "collab large model of another vocabulary than the small one's: text crosses the seam",
    )
    entropy_logprobs: int = Field(
        default=20,
        ge=1,
        le=100,
        description="log-probs a token session asks for to bound the next token's entropy "
        "(vLLM allows 20 unless started with a larger --max-logprobs); more is closer to the "
        "exact entropy an in-process backend reports",
    )
    session_header: str | None = Field(
        default="x-session-id",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the header that carries a token session's routing key, the same on every "
        "call of that session (with `x-request-id` beside it), so that a sticky router in "
        "front of replicas (vLLM's router reads `x-session-id`) keeps the session, and its "
        "prefix cache, on one replica; null: none is sent",
    )
    plain_chat: PlainChatName = Field(
        default=DEFAULT_PLAIN_CHAT,
        description="how a conversation is written for a model without a chat template "
        "(a base model), when a collab policy writes it with `tokenizer`: transcript | dialogue | "
        "qa | instruct",
    )
    max_token_chars: int = Field(
        default=64,
        ge=1,
        description="characters of the vocabulary's longest token: the gateway has no tokenizer "
        "for an HTTP model, so it checks a lower bound of the prompt's tokens, its characters "
        "over this",
    )

    @field_validator("session_header")
    @classmethod
    def _not_a_header_of_the_gateway(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in RESERVED_HEADERS:
            raise ValueError(f"'{value}' is a header the gateway sets itself")
        return None if value is None else value.lower()

    @field_validator("base_urls")
    @classmethod
    def _one_server_or_replicas(
        cls, urls: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        if "base_url" not in info.data:
            return urls  # base_url itself was refused: that error says enough
        if info.data["base_url"] is None and urls is None:
            raise ValueError("base_url (one server) or base_urls (replicas) is required")
        if info.data["base_url"] is not None and urls is not None:
            raise ValueError("base_url and base_urls are both set: one server, or replicas")
        addresses = [address(url) for url in urls or ()]
        if len(set(addresses)) < len(addresses):
            raise ValueError("names one host:port twice: each replica is its own server")
        return urls

    @property
    def urls(self) -> list[str]:
        return [self.base_url] if self.base_url is not None else list(self.base_urls or ())


@register("openai")
class OpenAIBackend(Backend):
    kind = "openai"
    Config = OpenAIBackendConfig

    def __init__(self, name: str, config: OpenAIBackendConfig) -> None:
        super().__init__(name, config)
        self.settings = config
        self.plain_chat = PLAIN_CHATS[config.plain_chat]
        self.content_types = frozenset(config.content_types)
        self._client: aiohttp.ClientSession | None = None
        self._replicas: ReplicaSet | None = None
        hosts = dict.fromkeys(urlsplit(url).hostname or "-" for url in config.urls)
        #: the upstream's host (replicas': their hosts), as traces name it (`server.address`)
        self.server = ",".join(hosts)

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

    def call_headers(self, session: str | None = None) -> dict[str, str]:
        """The headers of one call: the client request's id, and a token session's routing
        key under `session_header`."""
        headers = {"content-type": "application/json"}
        if (rid := request_id.get()) is not None:
            headers["x-request-id"] = rid
        if session is not None and (name := self.settings.session_header):
            headers[name] = session
        return headers

    async def start(self) -> None:
        urls = self.settings.urls
        if len(urls) == 1:
            self._client = self._new_client(urls[0])
            return
        replicas = [Replica(url, self._new_client(url)) for url in urls]
        self._replicas = ReplicaSet(replicas, self.settings.replica_cooldown)

    def _new_client(self, base_url: str) -> aiohttp.ClientSession:
        cfg = self.settings
        return aiohttp.ClientSession(
            base_url=base_url.rstrip("/") + "/",
            headers=self._headers(),
            # no `total` here: on a stream, ReadWatch holds the deadline at no cost per chunk
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=cfg.pool_timeout,
                sock_connect=cfg.connect_timeout,
                sock_read=cfg.read_timeout,
            ),
            connector=aiohttp.TCPConnector(
                limit=cfg.max_connections,
                limit_per_host=0,
                keepalive_timeout=cfg.keepalive_seconds,
            ),
            auto_decompress=False,
            # every tenant's calls share this session: a cookie an upstream sets on one
            # request must not ride on the next (and the jar costs work on every call)
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._replicas is not None:
            await self._replicas.aclose()
            self._replicas = None

    def replica_states(self) -> list[ReplicaState]:
        return [] if self._replicas is None else self._replicas.states()

    def post(
        self,
        path: str,
        content: bytes,
        headers: dict[str, str],
        key: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """One POST, on the replica picked for it when there are several; `key`: a token
        session's routing key, which keeps its calls on one replica."""
        if self._replicas is not None:
            return self._replicas.post(path, content, headers, key, timeout)
        if timeout is None:
            return self.client.post(path, data=content, headers=headers)
        return self.client.post(path, data=content, headers=headers, timeout=timeout)

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
        """Healthy when the server, or one replica of several, lists its models."""
        if self._replicas is not None:
            await self._replicas.probe(self._probe)
        else:
            await self._probe(self.client)

    async def _probe(self, client: aiohttp.ClientSession) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout)
        try:
            async with client.get("models", timeout=timeout) as response:
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
                        chunk = chunk_object(data, self.name)
                        chunks += 1
                        if chunk.get("usage"):
                            usage = parse_usage(chunk["usage"], self.name)
                        for event in chunk_events(to_events, chunk, self.name):
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
        headers = self.call_headers()
        content = encode_payload(payload)
        deadline = asyncio.get_running_loop().time() + self.settings.total_timeout
        operation = "chat" if path.startswith("chat") else "text_completion"
        try:
            with upstream_call(headers, operation, self.settings.model, self.server):
                async with self.post(path, content, headers) as response:
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
