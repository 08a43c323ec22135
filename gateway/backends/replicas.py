"""A few replicas of one model behind one `openai` backend, for small setups without a router.

```
ReplicaSet(replicas, cooldown)
    post(path, content, headers, key) -> response   on a replica picked for the call
    probe(check)                                     every replica's health, concurrently
    states() -> [ReplicaState]                       for /readyz and /metrics
```

A token session's calls (`key` set) go to the replica of highest rendezvous weight for that key
among those considered up: a session sticks to one replica, where its prefix is cached, and
when a replica dies only its own sessions move. A whole request (no key) goes to the replica
with the fewest calls outstanding, ties taken in turn. A call that fails before any byte of an
answer (refused, reset, no connection in time) marks its replica down for `cooldown` seconds
and is sent once more, to another replica; a down replica is tried again after its cool-down,
and every replica is tried when none is up. Policies never see replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from gateway.backends.base import ReplicaState

#: failures that mean the replica never started an answer: the call may go elsewhere
DEAD = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ConnectionTimeoutError,
)


Call = Callable[[aiohttp.ClientSession], Awaitable[aiohttp.ClientResponse]]


def shown_url(url: str) -> str:
    """`url` without user, password, query or fragment: safe to show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def address(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


@dataclass(eq=False)
class Replica:
    url: str
    client: aiohttp.ClientSession
    outstanding: int = 0
    up: bool = True
    retry_at: float = 0.0  # while down, when it may be tried again
    seed: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.seed = shown_url(self.url).encode()

    def weight(self, key: bytes) -> int:
        """The replica's rendezvous weight for a session key."""
        digest = hashlib.blake2b(self.seed + b"\0" + key, digest_size=8).digest()
        return int.from_bytes(digest, "big")


class ReplicaSet:
    def __init__(
        self,
        replicas: Sequence[Replica],
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = list(replicas)
        self.cooldown = cooldown
        self.clock = clock
        self._turn = 0

    def states(self) -> list[ReplicaState]:
        return [ReplicaState(shown_url(r.url), address(r.url), r.up) for r in self.replicas]

    def mark_up(self, replica: Replica) -> None:
        replica.up = True

    def mark_down(self, replica: Replica) -> None:
        replica.up = False
        replica.retry_at = self.clock() + self.cooldown

    def pick(self, key: str | None, avoid: Replica | None = None) -> Replica | None:
        """The replica for a call: None only when `avoid` is the one replica there is."""
        now = self.clock()
        others = [r for r in self.replicas if r is not avoid]
        usable = [r for r in others if r.up or now >= r.retry_at] or others
        if not usable:
            return None
        if key is not None:
            encoded = key.encode()
            return max(usable, key=lambda r: r.weight(encoded))
        self._turn = (self._turn + 1) % len(usable)
        turned = usable[self._turn :] + usable[: self._turn]
        return min(turned, key=lambda r: r.outstanding)

    async def _call_on(self, replica: Replica, call: Call) -> aiohttp.ClientResponse:
        """One call on `replica`, left counted outstanding when it answers."""
        replica.outstanding += 1
        try:
            response = await call(replica.client)
        except BaseException as exc:
            replica.outstanding -= 1
            if isinstance(exc, DEAD):
                self.mark_down(replica)
            raise
        self.mark_up(replica)
        return response

    async def _send(self, call: Call, key: str | None) -> tuple[Replica, aiohttp.ClientResponse]:
        first = self.pick(key)
        assert first is not None  # a set holds at least one replica
        try:
            return first, await self._call_on(first, call)
        except DEAD:
            second = self.pick(key, avoid=first)
            if second is None:
                raise
        return second, await self._call_on(second, call)

    @asynccontextmanager
    async def post(
        self,
        path: str,
        content: bytes,
        headers: dict[str, str],
        key: str | None = None,
        deadlines: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The answer of one POST, open until the block ends; the replica counts it outstanding
        until then."""

        async def call(client: aiohttp.ClientSession) -> aiohttp.ClientResponse:
            if deadlines is None:
                return await client.post(path, data=content, headers=headers)
            return await client.post(path, data=content, headers=headers, timeout=deadlines)

        replica, response = await self._send(call, key)
        try:
            async with response:
                yield response
        finally:
            replica.outstanding -= 1

    async def probe(self, check: Callable[[aiohttp.ClientSession], Awaitable[None]]) -> None:
        """Runs `check` on every replica at once; each one's outcome marks it up or down.
        Raises the first replica's error when none is up."""
        outcomes = await asyncio.gather(
            *(check(r.client) for r in self.replicas), return_exceptions=True
        )
        for replica, outcome in zip(self.replicas, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.mark_down(replica)
            else:
                self.mark_up(replica)
        if all(isinstance(o, BaseException) for o in outcomes):
            first = outcomes[0]
            assert isinstance(first, BaseException)
            raise first

    async def aclose(self) -> None:
        await asyncio.gather(*(r.client.close() for r in self.replicas))
