"""A small async key-value interface for the response cache and the rate limits.

```
Store                      get / set with a TTL / take from token buckets, atomically
├── MemoryStore            this process only: a bounded LRU and local buckets (the default)
└── RedisStore             shared by every replica (`gateway/stores/redis_store.py`); when Redis is
                           down or slow it raises `StoreUnavailable` at once instead of waiting
```

Callers treat `StoreUnavailable` as "go on without the store": the response cache bypasses
itself, the rate limiter falls back to a `MemoryStore`. A store never fails a request.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024


class StoreUnavailable(Exception):
    """The store cannot answer now (down, slow, refusing); go on without it."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One token bucket to take from: it holds up to `capacity` and refills `per_second`.

    A take is allowed when every bucket of the call holds at least its `need`; then each loses
    its `cost`. A level may go below zero (down to `-capacity`) when a cost is only known after
    the fact, as a response's token count is: the debt delays the next admission.
    """

    key: str
    capacity: float
    per_second: float
    cost: float = 1.0
    need: float = 1.0


@dataclass(frozen=True, slots=True)
class Taken:
    allowed: bool
    levels: tuple[float, ...]  # each bucket's level after the call, in the order given


def settle(buckets: Sequence[Bucket], levels: Sequence[float]) -> Taken:
    """Decide a take from the refilled levels (the same rule as the Redis script)."""
    allowed = all(level >= b.need for b, level in zip(buckets, levels, strict=True))
    if allowed:
        levels = [
            max(-b.capacity, level - b.cost) for b, level in zip(buckets, levels, strict=True)
        ]
    return Taken(allowed, tuple(levels))


class Store(ABC):
    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Keep `value` for `ttl` seconds (or until evicted)."""

    @abstractmethod
    async def take(self, buckets: Sequence[Bucket]) -> Taken:
        """Refill, check and debit every bucket as one atomic step."""

    async def start(self) -> None:
        """Connect, where there is something to connect to."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryStore(Store):
    """A store in this process. Values are kept in LRU order within `max_bytes`; buckets are
    one per key (rate-limit keys are API keys, so they stay few)."""

    def __init__(
        self, max_bytes: int = DEFAULT_MEMORY_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (level, when)

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._values.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_bytes or ttl <= 0:
            return
        self._drop(key)
        self._values[key] = (self._clock() + ttl, value)
        self._bytes += len(value)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._values)))

    async def take(self, buckets: Sequence[Bucket]) -> Taken:
        # No await between reading and writing the levels: atomic within the event loop.
        now = self._clock()
        levels = []
        for b in buckets:
            level, when = self._buckets.get(b.key, (b.capacity, now))
            levels.append(min(b.capacity, level + max(0.0, now - when) * b.per_second))
        taken = settle(buckets, levels)
        for b, level in zip(buckets, taken.levels, strict=True):
            self._buckets[b.key] = (level, now)
        return taken

    def _drop(self, key: str) -> None:
        entry = self._values.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])
