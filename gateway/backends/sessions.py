"""Token sessions: token-level control over one growing sequence on one model.

```
backend.open_session(prompt_ids) -> TokenSession
    next_distribution(k)     top-k ids + log-probs, entropy over the whole vocabulary, hidden state
    append(ids)              extend the sequence (the model reads them at the next query)
    score(ids, k)            append, and return each token's log-prob given what precedes it
    step(sampling, k)        pick one token, append it, return it with its log-prob
    generate(max_tokens, stop, sampling, k) -> Span
    close()                  free the KV cache; always called (use `async with`)
```

In-process runtimes implement the small synchronous `SessionCore` and get a `ThreadedSession`,
which runs every core call on the backend's single worker thread: the event loop never waits on
a forward pass, and concurrent sessions interleave token by token. `append` is lazy, so the last
token of a generation costs no forward pass unless someone asks what follows it. A closed
session's core goes to the backend's `PrefixPool`, so a later prompt that extends it (the next
request of a token-level client) reads only its new tokens.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, TypeVar, runtime_checkable

from gateway.backends.prefix_pool import PrefixPool
from gateway.core.request import Sampling
from gateway.core.tokens import HFTokenizer

T = TypeVar("T")


GREEDY = Sampling()


@dataclass(slots=True)
class Distribution:
    """What the model expects next. Log-probs are the raw model's, before any sampling rule."""

    ids: list[int]
    logprobs: list[float]
    entropy: float
    hidden: list[float] | None = None
    # tokens of the answer written before this one; the collab policy sets it for its trigger
    position: int | None = None


@dataclass(slots=True)
class TokenChoice:
    """One token of a sequence with its log-prob and the top-k alternatives at its position."""

    id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass(slots=True)
class Stop:
    """When a generation ends early: at one of `ids` (kept in the span) or once the decoded
    span contains one of `strings` (the span ends with the token that completed it)."""

    ids: Collection[int] = ()
    strings: Sequence[str] = ()


@dataclass(slots=True)
class Span:
    tokens: list[TokenChoice]
    finish: Literal["stop", "length"]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def logprobs(self) -> list[float]:
        return [t.logprob for t in self.tokens]


class SessionClosed(RuntimeError):
    pass


class TokenSession(ABC):
    """One sequence on one model. Subclasses implement the four primitives; `generate` is
    built on `step` and may be overridden by sessions that can do better (one HTTP call)."""

    def __init__(self, prompt_ids: Sequence[int]) -> None:
        self.ids: list[int] = list(prompt_ids)
        self.closed = False

    @abstractmethod
    async def next_distribution(self, k: int) -> Distribution: ...

    @abstractmethod
    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]: ...

    @abstractmethod
    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def append(self, ids: Sequence[int]) -> None:
        await self.score(ids)

    async def generate(
        self,
        max_tokens: int,
        stop: Stop | None = None,
        sampling: Sampling = GREEDY,
        k: int = 0,
        decode: Callable[[list[int]], str] | None = None,
    ) -> Span:
        """Up to `max_tokens` tokens; stop strings need `decode` (the tokenizer's)."""
        stop = stop or Stop()
        tokens: list[TokenChoice] = []
        while len(tokens) < max_tokens:
            choice = await self.step(sampling, k)
            tokens.append(choice)
            if choice.id in stop.ids or hit_stop_string(tokens, stop.strings, decode):
                return Span(tokens, "stop")
        return Span(tokens, "length")

    async def __aenter__(self: SessionT) -> SessionT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


SessionT = TypeVar("SessionT", bound=TokenSession)


def hit_stop_string(
    tokens: list[TokenChoice], strings: Sequence[str], decode: Callable[[list[int]], str] | None
) -> bool:
    if not strings or decode is None:
        return False
    # a stop string spans at most len(stop) tokens plus one partial token on each side
    window = max(len(s) for s in strings) + 2
    tail = decode([t.id for t in tokens[-window:]])
    last = decode([tokens[-1].id])
    return any(s in tail and s not in tail[: len(tail) - len(last)] for s in strings)


@runtime_checkable
class TokenBackend(Protocol):
    """A backend that opens token sessions and tells its tokenizer."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def tokenizer(self) -> HFTokenizer: ...

    async def open_session(
        self, prompt_ids: Sequence[int], *, hidden: bool = False
    ) -> TokenSession: ...


class SessionCore(Protocol):
    """One sequence's state inside an in-process runtime; called on one worker thread only."""

    #: the token ids the cache holds (what `extend` has read), in order
    forwarded: list[int]

    def extend(self, ids: Sequence[int], k: int | None) -> list[TokenChoice] | None:
        """Run the model over `ids` (KV cache kept); with `k` set, score each of them."""

    def distribution(self, k: int) -> Distribution: ...

    def pick(self, sampling: Sampling, k: int) -> TokenChoice:
        """Choose the next token from the current distribution (without appending it)."""

    def reuse(self) -> None:
        """Forget per-request state (the sampling RNG) before another session uses the core."""

    def release(self) -> None: ...


class Worker:
    """The single thread a runtime computes on; jobs run in submission order."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tandem-{name}")
        self.open_sessions = 0  # sessions not yet closed: a leak shows here first

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def submit(self, fn: Callable[[], object]) -> None:
        """Queue without waiting: safe in `finally` blocks of cancelled tasks."""
        self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ThreadedSession(TokenSession):
    """A `SessionCore` driven from the event loop through the runtime's `Worker`."""

    def __init__(
        self,
        core: SessionCore,
        worker: Worker,
        prompt_ids: Sequence[int],
        pool: PrefixPool[SessionCore] | None = None,
        hidden: bool = False,
    ) -> None:
        super().__init__(prompt_ids)
        self._core = core
        self._worker = worker
        # a core from the pool already holds a prefix of the prompt
        self._pending: list[int] = list(prompt_ids[len(core.forwarded) :])
        self._pool = pool
        self._hidden = hidden
        self._failed = False
        worker.open_sessions += 1

    async def _run(self, job: Callable[[], T]) -> T:
        try:
            return await self._worker.run(job)
        except asyncio.CancelledError:
            raise  # the job finishes on the worker; the core stays consistent
        except BaseException:
            self._failed = True  # a forward pass that failed half-way may have left a bad cache
            raise

    def _take_pending(self) -> list[int]:
        if self.closed:
            raise SessionClosed("the token session is closed")
        pending, self._pending = self._pending, []
        return pending

    async def next_distribution(self, k: int) -> Distribution:
        pending = self._take_pending()
        core = self._core

        def job() -> Distribution:
            if pending:
                core.extend(pending, None)
            return core.distribution(k)

        return await self._run(job)

    async def append(self, ids: Sequence[int]) -> None:
        """The model reads the ids lazily, with the next query."""
        if self.closed:
            raise SessionClosed("the token session is closed")
        self._pending.extend(ids)
        self.ids.extend(ids)

    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]:
        pending = self._take_pending()
        core, new = self._core, list(ids)

        def job() -> list[TokenChoice]:
            if pending:
                core.extend(pending, None)
            return core.extend(new, k) or []

        scores = await self._run(job)
        self.ids.extend(new)
        return scores

    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice:
        pending = self._take_pending()
        core = self._core

        def job() -> TokenChoice:
            if pending:
                core.extend(pending, None)
            return core.pick(sampling, k)

        choice = await self._run(job)
        self.ids.append(choice.id)
        self._pending = [choice.id]
        return choice

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending = []
        self._worker.open_sessions -= 1
        core, pool, hidden = self._core, self._pool, self._hidden
        if pool is None or self._failed:
            self._worker.submit(core.release)
        else:  # queued after this session's last job, so the pool never sees a busy core
            self._worker.submit(lambda: pool.put(core, hidden))
