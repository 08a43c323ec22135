"""The Redis store: one pooled client, every operation bounded by a short timeout.

Redis is an optimisation, never a dependency of a request. An operation that fails or takes
longer than its timeout raises `StoreUnavailable` (a cache miss; the limiter decides locally).
A refused connection, or `TIMEOUTS_TO_OUTAGE` timeouts in a row, open an outage: from then on
operations fail at once without touching the network, one warning is logged and
`tandem_redis_outages_total` counts it. A lone timeout does not: under a burst, our own busy
event loop can make a healthy Redis look slow. Traffic during the outage starts a probe (`PING`)
at growing intervals; the first that answers ends the outage, and Redis serves again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from time import monotonic, perf_counter
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.observability.metrics import Metrics
from gateway.stores.cache import Bucket, Store, StoreUnavailable, Taken

log = logging.getLogger(__name__)

T = TypeVar("T")
PROBE_FIRST = 0.1
PROBE_MAX = 2.0
TIMEOUTS_TO_OUTAGE = 3

# KEYS: one hash per bucket ({l: level, t: ms}); ARGV: 4 numbers per bucket
# (capacity, refill per ms, cost, need). Redis' own clock, so replicas agree on refills.
# Buckets have no expiry (two per API key), so a Redis that evicts with `volatile-lru` drops
# cached answers and plans, which expire, and never a bucket: an evicted bucket is a full one.
TAKE_SCRIPT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local levels, allowed = {}, 1
for i = 1, #KEYS do
  local cap, rate = tonumber(ARGV[i * 4 - 3]), tonumber(ARGV[i * 4 - 2])
  local state = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(state[1]) or cap
  local last = tonumber(state[2]) or now
  level = math.min(cap, level + math.max(0, now - last) * rate)
  if level < tonumber(ARGV[i * 4]) then allowed = 0 end
  levels[i] = level
end
local out = {allowed}
for i = 1, #KEYS do
  local cap, rate = tonumber(ARGV[i * 4 - 3]), tonumber(ARGV[i * 4 - 2])
  local level = levels[i]
  if allowed == 1 then level = math.max(-cap, level - tonumber(ARGV[i * 4 - 1])) end
  redis.call('HSET', KEYS[i], 'l', tostring(level), 't', now)
  out[i + 1] = tostring(level)
end
return out
"""


class RedisStore(Store):
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        timeout: float = 0.05,
        take_timeout: float = 0.25,
        prefix: str = "tandem:",
        max_connections: int = 32,
    ) -> None:
        self.timeout = timeout
        # A rate-limit decision made locally is less exact, so it may wait a little longer.
        self.take_timeout = take_timeout
        self.prefix = prefix
        self._metrics = metrics
        # No retries inside redis-py: a retry would outlive the timeout; the outage logic
        # retries. A burst waits for a pooled connection rather than failing for want of one.
        pool = BlockingConnectionPool.from_url(
            url,
            socket_timeout=max(timeout, take_timeout),
            socket_connect_timeout=max(timeout, take_timeout),
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,  # no CLIENT SETINFO round trips on each new connection
        )
        self._client = Redis.from_pool(pool)  # owns the pool: aclose() closes it
        self._take = self._client.register_script(TAKE_SCRIPT)
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self._outage = Outage(where, self._ping, metrics)

    async def start(self) -> None:
        """Say whether Redis answers; an unreachable Redis opens an outage, it stops nothing."""
        try:
            await self._run("ping", self._client.ping)
        except StoreUnavailable:
            return
        self._metrics.redis_up.set(1)
        log.info("using Redis at %s for the response cache and rate limits", self._outage.where)

    async def aclose(self) -> None:
        await self._outage.aclose()
        await self._client.aclose()

    @property
    def available(self) -> bool:
        return self._outage.since is None

    async def get(self, key: str) -> bytes | None:
        value = await self._run("get", lambda: self._client.get(self.prefix + key))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        milliseconds = max(1, round(ttl * 1000))
        await self._run("set", lambda: self._client.set(self.prefix + key, value, px=milliseconds))

    async def take(self, buckets: Sequence[Bucket]) -> Taken:
        keys = [self.prefix + b.key for b in buckets]
        args: list[float] = []
        for b in buckets:
            args += [b.capacity, b.per_second / 1000, b.cost, b.need]
        reply: list[Any] = await self._run(
            "take", lambda: self._take(keys=keys, args=args), self.take_timeout
        )
        return Taken(bool(reply[0]), tuple(float(level) for level in reply[1:]))

    async def _ping(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._client.ping()
        # Connections idle since before the outage may point at a dead server process.
        await self._client.connection_pool.disconnect(inuse_connections=False)

    async def _run(
        self, op: str, call: Callable[[], Awaitable[T]], seconds: float | None = None
    ) -> T:
        if not self._outage.passes():
            raise StoreUnavailable
        started = perf_counter()
        try:
            async with asyncio.timeout(seconds or self.timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError | RedisTimeout)
            self._observe(op, "timeout" if timed_out else "error", started)
            self._outage.failed(exc, timed_out)
            raise StoreUnavailable from None
        self._observe(op, "ok", started)
        self._outage.timeouts = 0
        return result

    def _observe(self, op: str, result: str, started: float) -> None:
        self._metrics.redis_seconds.labels(op, result).observe(perf_counter() - started)


class Outage:
    """Whether Redis is being avoided, and the probes that end the avoidance."""

    def __init__(self, where: str, probe: Callable[[], Awaitable[None]], metrics: Metrics) -> None:
        self.where = where
        self.since: float | None = None
        self._probe = probe
        self._metrics = metrics
        self._wait = PROBE_FIRST
        self._next_probe = 0.0
        self._probing: asyncio.Task[None] | None = None
        self.timeouts = 0  # in a row

    def passes(self) -> bool:
        """True when an operation may go to Redis; during an outage, maybe start a probe."""
        if self.since is None:
            return True
        if self._probing is None and monotonic() >= self._next_probe:
            self._probing = asyncio.create_task(self._try_probe())
        return False

    def failed(self, exc: BaseException, timed_out: bool) -> None:
        self.timeouts = self.timeouts + 1 if timed_out else 0
        if self.since is None and (not timed_out or self.timeouts >= TIMEOUTS_TO_OUTAGE):
            self._begin(exc)

    def _begin(self, exc: BaseException) -> None:
        self.since = monotonic()
        self._wait = PROBE_FIRST
        self._next_probe = self.since + self._wait
        self._metrics.redis_outages.inc()
        self._metrics.redis_up.set(0)
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        log.warning(
            "Redis at %s unavailable (%s): bypassing the response cache and limiting locally "
            "until it answers again",
            self.where,
            reason,
        )

    async def _try_probe(self) -> None:
        try:
            await self._probe()
        except (RedisError, OSError, TimeoutError):
            self._wait = min(self._wait * 2, PROBE_MAX)
            self._next_probe = monotonic() + self._wait
            return
        finally:
            self._probing = None
        if self.since is not None:
            log.warning(
                "Redis at %s answers again after %.1f s", self.where, monotonic() - self.since
            )
        self.since = None
        self.timeouts = 0
        self._metrics.redis_up.set(1)

    async def aclose(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
