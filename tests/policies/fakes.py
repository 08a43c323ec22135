"""A token backend wrapped with scripted trouble: a round trip added to every call, failures,
hangs, and a record of what each session was handed. Fakes for the collab policy's tests and
for its benchmark's injected network latency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.base import Backend
from gateway.backends.sessions import (
    GREEDY,
    Distribution,
    Span,
    Stop,
    TokenBackend,
    TokenChoice,
    TokenSession,
)
from gateway.core.errors import UpstreamUnavailable
from gateway.core.events import EventStream
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.core.request import Sampling
from gateway.core.tokens import HFTokenizer


@dataclass
class Script:
    """What the wrapped backend does to each model call."""

    delay: float = 0.0  # seconds added before each call (a network round trip)
    mode: str = "ok"  # ok | fail | hang
    calls: int = 0
    opened: int = 0
    appended: list[list[int]] = field(default_factory=list)  # ids handed to sessions, per call
    sessions: list[TokenSession] = field(default_factory=list)


class ScriptedSession(TokenSession):
    def __init__(self, inner: TokenSession, script: Script) -> None:
        super().__init__([])
        self.inner = inner
        self.ids = inner.ids  # the same list: the inner session keeps it up to date
        self.script = script

    async def _call(self) -> None:
        self.script.calls += 1
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        if self.script.mode == "fail":
            raise UpstreamUnavailable("backend 'scripted' is down")
        if self.script.mode == "hang":
            await asyncio.Event().wait()

    async def next_distribution(self, k: int) -> Distribution:
        await self._call()
        return await self.inner.next_distribution(k)

    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]:
        await self._call()
        self.script.appended.append(list(ids))
        return await self.inner.score(ids, k)

    async def append(self, ids: Sequence[int]) -> None:
        self.script.appended.append(list(ids))
        await self.inner.append(ids)

    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice:
        await self._call()
        return await self.inner.step(sampling, k)

    async def generate(
        self,
        max_tokens: int,
        stop: Stop | None = None,
        sampling: Sampling = GREEDY,
        k: int = 0,
        decode: Callable[[list[int]], str] | None = None,
    ) -> Span:
        await self._call()  # one round trip per span, as an HTTP session makes
        return await self.inner.generate(max_tokens, stop, sampling, k, decode)

    async def close(self) -> None:
        await self.inner.close()


class ScriptedBackend(Backend):
    """`inner`'s sessions, with `script` applied; the rest of `inner` passes through."""

    kind = "scripted"

    def __init__(self, inner: TokenBackend, script: Script | None = None) -> None:
        super().__init__("scripted", None)
        self.inner = inner
        self.script = script or Script()

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def tokenizer(self) -> HFTokenizer:
        return self.inner.tokenizer

    @property
    def eos_ids(self) -> frozenset[int]:
        eos: frozenset[int] = getattr(self.inner, "eos_ids", frozenset())
        return eos

    async def open_session(
        self, prompt_ids: Sequence[int], *, hidden: bool = False
    ) -> TokenSession:
        self.script.opened += 1
        self.script.appended.append(list(prompt_ids))
        inner = await self.inner.open_session(prompt_ids, hidden=hidden)
        session = ScriptedSession(inner, self.script)
        self.script.sessions.append(session)
        return session

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        raise NotImplementedError

    def complete(self, request: CompletionRequest) -> EventStream:
        raise NotImplementedError


def scripted(inner: Any, **script: Any) -> ScriptedBackend:
    return ScriptedBackend(inner, Script(**script))
