"""A few finished sessions' KV caches, kept so that a request extending one skips its prefill.

Token-level clients (another Tandem's HTTP sessions, collaborative policies) send the same
growing sequence again and again; vLLM answers them from its prefix cache, and this pool does
the same for in-process runtimes: a new session whose prompt starts with a pooled core's
forwarded tokens takes that core and reads only the new tokens. Bounded by entry count; the
oldest entry's cache is released first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class PoolableCore(Protocol):
    #: the token ids whose keys and values the core's cache holds, in order
    forwarded: list[int]

    def reuse(self) -> None:
        """Forget per-request state (the sampling RNG) before another session uses the core."""

    def release(self) -> None: ...


C = TypeVar("C", bound=PoolableCore)


class PrefixPool(Generic[C]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: list[tuple[C, bool]] = []
        self._lock = threading.Lock()  # taken on the event loop, given back on the worker
        self.hits = 0

    def take(self, prompt: Sequence[int], hidden: bool) -> C | None:
        """The pooled core with the longest forwarded prefix of `prompt`, removed from the pool."""
        with self._lock:
            best, best_len = -1, 0
            for n, (core, core_hidden) in enumerate(self._entries):
                size = len(core.forwarded)
                fits = core_hidden == hidden and best_len < size <= len(prompt)
                if fits and core.forwarded == list(prompt[:size]):
                    best, best_len = n, size
            if best < 0:
                return None
            core, _ = self._entries.pop(best)
            self.hits += 1
        core.reuse()
        return core

    def put(self, core: C, hidden: bool) -> None:
        """Keep a finished session's core; runs on the worker after the session's last job."""
        if self.size <= 0 or not core.forwarded:
            core.release()
            return
        with self._lock:
            self._entries.append((core, hidden))
            evicted = self._entries[: -self.size]
            del self._entries[: -self.size]
        for old, _ in evicted:
            old.release()

    def clear(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, []
        for core, _ in entries:
            core.release()

    def __len__(self) -> int:
        return len(self._entries)
