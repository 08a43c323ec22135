"""Per-API-key rate limits: requests per minute and tokens per minute, as token buckets.

Each key has a requests bucket (holds `rpm`, refills `rpm` a minute) and a tokens bucket (holds
`tpm`). Admitting a request takes one from the requests bucket and needs at least one token
left; once the body is read, the request reserves what it may cost (its prompt's estimate plus
`max_tokens` x `n`, at most the bucket), and the reservation is settled to the response's usage
when it is known, so a key that spent more than its tokens waits until the bucket refills. The
buckets live in the shared store (Redis: one Lua script, atomic across replicas); while it is
unavailable, in this process.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import aclosing
from dataclasses import dataclass

from gateway.core.errors import RateLimited
from gateway.core.events import Delta, EventStream, Usage
from gateway.observability.metrics import Metrics
from gateway.stores.cache import Bucket, MemoryStore, Store, StoreUnavailable, Taken

ANONYMOUS = "anonymous"  # the one key every caller shares when API keys are off


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    headers: list[tuple[str, str]]
    refused_by: str | None = None
    retry_after: float | None = None


def duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1s", "6m0s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class RateLimiter:
    def __init__(self, limits: Limits, store: Store, metrics: Metrics) -> None:
        self.limits = limits
        self.store = store
        self.local = store if isinstance(store, MemoryStore) else MemoryStore()
        self._metrics = metrics
        self._pending: set[asyncio.Future[None]] = set()

    async def admit(self, key_id: str | None, limits: Limits | None = None) -> Admission:
        """Take one request; an Admission that is not `allowed` says which limit refused.
        `limits`: the key's own, when it has them (else the limiter's)."""
        limits = limits or self.limits
        kinds = _kinds(limits)
        if not kinds:
            return Admission(True, [])
        # Tokens are charged when the response's usage is known; admission needs one left.
        buckets = [
            _bucket(limits, key_id, kind, cost=1 if kind == "requests" else 0) for kind in kinds
        ]
        taken = await self._take(buckets)
        headers: list[tuple[str, str]] = []
        waits: dict[str, float] = {}
        for kind, bucket, level in zip(kinds, buckets, taken.levels, strict=True):
            headers += [
                (f"x-ratelimit-limit-{kind}", str(int(bucket.capacity))),
                (f"x-ratelimit-remaining-{kind}", str(max(0, math.floor(level)))),
                (
                    f"x-ratelimit-reset-{kind}",
                    duration((bucket.capacity - level) / bucket.per_second),
                ),
            ]
            if level < bucket.need:
                waits[kind] = (bucket.need - level) / bucket.per_second
        if taken.allowed:
            return Admission(True, headers)
        refused_by = max(waits, key=lambda kind: waits[kind])
        self._metrics.rate_limited.labels(refused_by).inc()
        return Admission(False, headers, refused_by, waits[refused_by])

    async def debit(self, key_id: str | None, tokens: int, limits: Limits | None = None) -> None:
        """Charge tokens to a key; a negative count gives back what a reservation overstated."""
        limits = limits or self.limits
        if limits.tokens_per_minute > 0 and tokens != 0:
            await self._take([_bucket(limits, key_id, "tokens", cost=tokens, need=0)])

    async def reserve(self, key_id: str | None, tokens: int, limits: Limits | None = None) -> int:
        """Take `tokens` (at most the bucket's capacity) before a request runs, or raise a 429:
        concurrent requests cannot all enter on the last token. Returns what was reserved."""
        limits = limits or self.limits
        if limits.tokens_per_minute <= 0 or tokens <= 0:
            return 0
        amount = min(tokens, limits.tokens_per_minute)
        bucket = _bucket(limits, key_id, "tokens", cost=amount, need=amount)
        taken = await self._take([bucket])
        if not taken.allowed:
            self._metrics.rate_limited.labels("tokens").inc()
            wait = (amount - taken.levels[0]) / bucket.per_second
            raise refusal(Admission(False, [], "tokens", wait))
        return amount

    async def metered(
        self,
        key_id: str | None,
        events: EventStream,
        limits: Limits | None = None,
        reserved: int = 0,
        prompt_estimate: int = 0,
    ) -> EventStream:
        """The events unchanged; the reservation is settled to their usage as soon as it is
        known, or, for a stream that ends without one (a client that left, an error), to the
        prompt's estimate plus one token per piece produced."""
        settled, produced = False, 0
        try:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Delta):
                        produced += 1
                    elif isinstance(event, Usage) and not settled:
                        settled = True
                        await self.debit(key_id, event.total_tokens - reserved, limits)
                    yield event
        finally:
            if not settled:
                # not awaited here: this may run while the request is being cancelled
                charge = prompt_estimate + produced - reserved
                self._pending.add(task := asyncio.ensure_future(self.debit(key_id, charge, limits)))
                task.add_done_callback(self._pending.discard)

    async def _take(self, buckets: list[Bucket]) -> Taken:
        try:
            return await self.store.take(buckets)
        except StoreUnavailable:
            return await self.local.take(buckets)


def _kinds(limits: Limits) -> list[str]:
    kinds = ["requests"] if limits.requests_per_minute > 0 else []
    return kinds + (["tokens"] if limits.tokens_per_minute > 0 else [])


def _bucket(limits: Limits, key_id: str | None, kind: str, cost: float, need: float = 1) -> Bucket:
    per_minute = limits.requests_per_minute if kind == "requests" else limits.tokens_per_minute
    # The braces are a Redis Cluster hash tag: a key's buckets share a slot, as Lua needs.
    key = f"rl:{{{key_id or ANONYMOUS}}}:{kind}"
    return Bucket(key, per_minute, per_minute / 60, cost, need)


def refusal(admission: Admission) -> RateLimited:
    """The 429 for a refused admission, worded like OpenAI's."""
    kind = admission.refused_by or "requests"
    wait = math.ceil(admission.retry_after or 1)
    return RateLimited(
        f"Rate limit reached for {kind} per minute on this API key. Please try again in {wait}s.",
        retry_after=wait,
    )
