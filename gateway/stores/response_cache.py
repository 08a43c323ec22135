"""The response cache: deterministic answers kept as their event streams and replayed.

Only deterministic requests are cached (`temperature` 0, or a `seed`). The key is a hash of the
request after alias resolution: the policy, its parameters, the backends' model identities and
every request field that can change the answer, but not `stream` or `stream_options`, so a
streamed and a whole response share an entry. Entries are scoped to the caller's API key unless
the scope is global: a hit never reveals another tenant's traffic.

An entry is the list of events the policy yielded, so a replay goes through the same serialiser:
a streamed hit gets the original token-sized chunks, reasoning and usage. Only complete answers
(the stream ended with its report, no error, no disconnect) are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from gateway.backends.base import Backend
from gateway.core.events import Delta, Event, EventStream, Finish, Report, Usage
from gateway.core.protocol import CacheControl, SamplingFields
from gateway.observability.metrics import Metrics
from gateway.policies.base import PolicyParams
from gateway.stores.cache import Store, StoreUnavailable
from gateway.stores.digest import Digest

log = logging.getLogger(__name__)

Status: TypeAlias = Literal["hit", "miss", "bypass"]
FORMAT = "v2"  # v2: keys are a `Digest` of the fields, no longer of their JSON text
NOT_KEYED = {"stream", "stream_options", "tandem", "model"}
EVENT_TAGS: dict[type[Any], str] = {Delta: "d", Finish: "f", Usage: "u", Report: "r"}
EVENT_TYPES = {tag: kind for kind, tag in EVENT_TAGS.items()}


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = True
    ttl: float = 300.0
    scope: Literal["key", "global"] = "key"
    max_entry_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Lookup:
    status: Status
    key: str | None = None  # where to store the answer; None: do not store it
    ttl: float = 0.0
    events: list[Event] | None = None  # the stored answer, on a hit


def deterministic(body: SamplingFields) -> bool:
    return body.temperature == 0 or body.seed is not None


def request_key(
    body: SamplingFields,
    policy: str,
    params: PolicyParams,
    backends: Mapping[str, Backend],
    scope: str,
) -> str:
    """The entry's key: the tenant's scope, then a digest of what determines the answer, fed
    with the validated request's own values (`Digest`)."""
    digest = Digest().add(type(body).__name__).add(policy).add(params)
    digest.add({role: [b.name, b.model_id] for role, b in backends.items()})
    digest.model(body, exclude=NOT_KEYED)
    return f"resp:{FORMAT}:{scope}:{digest.hexdigest()}"


def encode(events: list[Event]) -> bytes:
    rows = [{"type": EVENT_TAGS[type(e)], **dataclasses.asdict(e)} for e in events]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()


def decode(blob: bytes) -> list[Event]:
    """Events from an entry; anything unreadable raises ValueError (and counts as a miss)."""
    try:
        return [EVENT_TYPES[row.pop("type")](**row) for row in json.loads(blob)]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable cache entry: {exc}") from None


def tagged(report: Report, status: Status) -> Report:
    """The report saying how the cache served the answer (`tandem.cache`)."""
    return dataclasses.replace(report, extra={**report.extra, "cache": status})


async def replayed(events: list[Event]) -> EventStream:
    for event in events:
        yield event


class ResponseCache:
    def __init__(self, store: Store, config: CacheConfig, metrics: Metrics) -> None:
        self.store = store
        self.config = config
        self._metrics = metrics
        self._writes: set[asyncio.Task[None]] = set()

    async def lookup(
        self,
        body: SamplingFields,
        policy: str,
        params: PolicyParams,
        backends: Mapping[str, Backend],
        key_id: str | None,
    ) -> Lookup:
        control = body.options().cache or CacheControl()
        if not (self.config.enabled and deterministic(body) and control.store):
            return self._counted(Lookup("bypass"))
        scope = "global" if self.config.scope == "global" else f"key:{key_id or 'anonymous'}"
        key = request_key(body, policy, params, backends, scope)
        ttl = control.ttl or self.config.ttl
        if not control.read:
            return self._counted(Lookup("miss", key, ttl))
        try:
            blob = await self.store.get(key)
        except StoreUnavailable:
            return self._counted(Lookup("bypass"))
        if blob is None:
            return self._counted(Lookup("miss", key, ttl))
        try:
            return self._counted(Lookup("hit", events=decode(blob)))
        except ValueError as exc:
            log.warning("ignoring a response cache entry: %s", exc)
            return self._counted(Lookup("miss", key, ttl))

    def replay(self, lookup: Lookup) -> EventStream:
        """The stored answer of a hit (its report is tagged where the response is made, with
        the status of every answer: `tagged`)."""
        assert lookup.events is not None
        return replayed(lookup.events)

    def record(self, lookup: Lookup, events: EventStream) -> EventStream:
        """A fresh answer, stored when it completes if the lookup gave it a key; as it is
        otherwise, so that an uncached stream costs no extra step per chunk."""
        if lookup.key is None:
            return events
        return self._recorded(lookup.key, lookup.ttl, events)

    async def _recorded(self, key: str, ttl: float, events: EventStream) -> EventStream:
        seen: list[Event] | None = []
        size = 0
        async with aclosing(events):
            async for event in events:
                if seen is not None:
                    if isinstance(event, Delta):
                        size += len(event.text) + len(event.reasoning or "")
                    if size > self.config.max_entry_bytes:
                        seen = None  # it cannot be stored: stop keeping it
                    else:
                        seen.append(event)
                yield event
        # Reached only when the stream ended normally: errors and disconnects raise past here.
        # A degraded answer is not kept: the next request may get the large model again.
        report = seen[-1] if seen else None
        if seen is not None and isinstance(report, Report) and not report.degraded:
            self._write(key, encode(seen), ttl)

    def _write(self, key: str, blob: bytes, ttl: float) -> None:
        """Store in the background: the client is not kept waiting for the cache."""
        if len(blob) > self.config.max_entry_bytes:
            return
        task = asyncio.create_task(self._set(key, blob, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _set(self, key: str, blob: bytes, ttl: float) -> None:
        # The store has logged its outage; this answer is simply not kept.
        with suppress(StoreUnavailable):
            await self.store.set(key, blob, ttl)

    def _counted(self, lookup: Lookup) -> Lookup:
        self._metrics.cache_requests.labels("response", lookup.status).inc()
        return lookup

    async def aclose(self) -> None:
        """Let the writes in flight finish (each is bounded by the store's timeout)."""
        await asyncio.gather(*self._writes, return_exceptions=True)
