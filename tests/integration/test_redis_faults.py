"""Redis killed, restarted, paused and flushed while clients keep asking: no request fails, and
every response says truthfully how the cache served it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from tests.servers import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Upstream, catalog_for, serve_gateway
from tests.servers import write_catalog as write

WORKERS = 8
BODY = {
    "model": "relay",
    "temperature": 0,
    "messages": [{"role": "user", "content": "fault-test question"}],
    "fake": {"chunks": 4},
}
ANSWER = "w0 w1 w2 w3"


@dataclass
class Outcome:
    started: float
    ended: float
    status: int = 0
    header: str | None = None
    extension: str | None = None
    text: str | None = None
    error: str | None = None


class Load:
    """Clients asking the same deterministic question without pause, every answer recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(WORKERS)))

    def stop(self) -> None:
        self._stop.set()

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            outcome = Outcome(time.monotonic(), 0.0)
            try:
                response = await client.post("/v1/chat/completions", json=BODY)
                outcome.status = response.status_code
                outcome.header = response.headers.get("x-tandem-cache")
                body = response.json()
                outcome.extension = body.get("tandem", {}).get("cache")
                outcome.text = body.get("choices", [{}])[0].get("message", {}).get("content")
            except (httpx.HTTPError, ValueError) as exc:
                outcome.error = repr(exc)
            outcome.ended = time.monotonic()
            self.outcomes.append(outcome)
            await asyncio.sleep(0.002)

    def between(self, start: float, end: float) -> list[str | None]:
        """Headers of the requests that started after `start` and ended before `end`."""
        return [o.header for o in self.outcomes if o.started > start and o.ended < end]

    async def until(self, header: str, after: float, within: float = 5.0) -> float:
        """Wait for a response with `header` that ended after `after`; the time it was seen."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(o.header == header and o.ended > after for o in self.outcomes):
                return time.monotonic()
            await asyncio.sleep(0.01)
        raise AssertionError(f"no '{header}' within {within} s: {self.timeline()}")

    def timeline(self) -> str:
        """Runs of equal headers with their start times, to read a failure by."""
        runs: list[list[object]] = []
        origin = self.outcomes[0].started if self.outcomes else 0.0
        for o in self.outcomes:
            if runs and runs[-1][0] == o.header:
                runs[-1][2] = int(runs[-1][2]) + 1  # type: ignore[call-overload]
            else:
                runs.append([o.header, round(o.started - origin, 2), 1])
        return " ".join(f"{h}@{t}x{n}" for h, t, n in runs)


async def blocking(call: Callable[[], object]) -> float:
    """Run a blocking step (starting a server) off the event loop the clients share."""
    await asyncio.to_thread(call)
    return time.monotonic()


async def flush(url: str) -> None:
    admin = Redis.from_url(url)
    await admin.flushall()
    await admin.aclose()


async def test_redis_faults_under_load_fail_no_request(
    tmp_path: Path,
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    caplog.set_level(logging.WARNING, logger="gateway.stores.redis_store")
    catalog = write(tmp_path, catalog_for(upstream.url))
    with RedisServer() as redis, serve_gateway(catalog, redis_url=redis.url) as url:
        load = Load(url)
        running = asyncio.create_task(load.run())
        warm = await load.until("hit", after=0)
        await asyncio.sleep(0.3)

        killed = await blocking(redis.kill)
        await asyncio.sleep(0.6)
        restarted = await blocking(redis.start)
        refilled = await load.until("hit", after=restarted)
        await asyncio.sleep(0.3)

        paused = await blocking(redis.pause)
        await asyncio.sleep(0.6)
        resumed = await blocking(redis.resume)
        recovered = await load.until("hit", after=resumed)
        await asyncio.sleep(0.3)

        flushed = time.monotonic()
        await flush(redis.url)
        await load.until("miss", after=flushed)
        refilled_again = await load.until("hit", after=flushed)
        await asyncio.sleep(0.3)
        load.stop()
        await running
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text

    outcomes = load.outcomes
    assert len(outcomes) > 100
    assert [o for o in outcomes if o.error or o.status != 200 or o.text != ANSWER] == []
    assert all(o.header == o.extension for o in outcomes), "header and extension agree"
    down = load.between(killed + 0.05, restarted)
    assert down, "requests were served while Redis was dead"
    assert set(down) == {"bypass"}, "a dead Redis is bypassed"
    stopped = load.between(paused + 0.01, resumed)
    assert stopped, "requests were served while Redis was paused"
    assert set(stopped) == {"bypass"}, "a paused Redis is bypassed"
    assert "miss" not in load.between(resumed, recovered), "a paused Redis kept its entries"
    for start, end in ((warm, killed), (refilled, paused), (recovered, flushed)):
        steady = load.between(start + 0.05, end)
        assert steady, "requests were served while Redis was healthy"
        assert set(steady) == {"hit"}, "a healthy Redis serves every request"
    assert set(load.between(refilled_again + 0.05, time.monotonic())) == {"hit"}
    assert "tandem_redis_outages_total 2.0" in metrics
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in warnings) == 2, "one log line per outage"
    assert sum("answers again after" in m for m in warnings) == 2
