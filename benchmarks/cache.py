"""Response-cache latency through the gateway: hits in memory and on Redis against misses.

Tandem serves on loopback in front of the fake upstream; one client sends the same deterministic
chat request in a loop. A miss is forced with `tandem.cache: "no-cache"` (it asks the upstream
and stores the answer again); a hit is the plain request. Goal: a Redis hit adds under 1 ms at
p50 over an in-memory hit.

Run: `python -m benchmarks.cache [--requests 300] [--redis redis://127.0.0.1:6379/0]`
(`make redis` starts a Redis on 6379 when none answers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.core.config import Settings
from gateway.server.app import create_app
from loadtests.fake_upstream import FakeConfig, FakeUpstream, ServerThread

QUESTION = "What does a cache hit cost?"


@contextmanager
def gateway(upstream_url: str, **settings: Any) -> Iterator[str]:
    catalog = {
        "backends": {"up": {"kind": "openai", "base_url": f"{upstream_url}/v1", "model": "m"}},
        "models": {"relay": {"policy": "direct", "backends": {"main": "up"}}},
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "catalog.yaml"
        path.write_text(yaml.safe_dump(catalog))
        app = create_app(Settings(config=path, **settings))
        with ServerThread(app) as server:
            yield server.url


def body(stream: bool, fresh: bool) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "relay",
        "temperature": 0,
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": stream,
    }
    if fresh:
        request["tandem"] = {"cache": "no-cache"}
    return request


def timed(client: httpx.Client, request: dict[str, Any], expect: str) -> float:
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=request)
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.headers["x-tandem-cache"] == expect, response.headers["x-tandem-cache"]
    return elapsed


def measure(urls: dict[str, str], requests: int, stream: bool) -> dict[str, list[float]]:
    """Samples per store and result. The stores take turns request by request, so that other
    load on the machine weighs on each of them alike."""
    samples: dict[str, list[float]] = {f"{n} {r}": [] for n in urls for r in ("hit", "miss")}
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, url in urls.items()}
    try:
        for client in clients.values():
            timed(client, body(stream, fresh=True), "miss")
            for _ in range(max(10, requests // 10)):  # warm-up: connections, code paths
                timed(client, body(stream, fresh=False), "hit")
        for _ in range(requests):
            for name, client in clients.items():
                samples[f"{name} miss"].append(timed(client, body(stream, fresh=True), "miss"))
                samples[f"{name} hit"].append(timed(client, body(stream, fresh=False), "hit"))
    finally:
        for client in clients.values():
            client.close()
    return samples


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values) * 1000, cuts[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--redis", default=os.environ.get("TANDEM_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--chunks", type=int, default=32, help="tokens in the upstream answer")
    parser.add_argument("--ttft", type=float, default=0.0, help="upstream seconds to first token")
    args = parser.parse_args()
    fake = FakeUpstream(FakeConfig(chunks=args.chunks, ttft=args.ttft))
    prefix = f"tandem-bench:{uuid.uuid4().hex[:8]}:"
    print(
        f"{args.requests} requests per row, sequential; upstream answer {args.chunks} tokens, "
        f"ttft {args.ttft * 1000:.0f} ms; latency in ms"
    )
    print(f"{'store':8} {'mode':9} {'hit p50':>8} {'hit p99':>8} {'miss p50':>9} {'miss p99':>9}")
    with (
        ServerThread(fake.app) as upstream,
        gateway(upstream.url) as memory,
        gateway(upstream.url, redis_url=args.redis, redis_prefix=prefix) as redis,
    ):
        for stream in (False, True):
            samples = measure({"memory": memory, "redis": redis}, args.requests, stream)
            mode = "stream" if stream else "whole"
            for name in ("memory", "redis"):
                hit50, hit99 = percentiles(samples[f"{name} hit"])
                miss50, miss99 = percentiles(samples[f"{name} miss"])
                print(f"{name:8} {mode:9} {hit50:8.2f} {hit99:8.2f} {miss50:9.2f} {miss99:9.2f}")
            extra = percentiles(samples["redis hit"])[0] - percentiles(samples["memory hit"])[0]
            verdict = "meets" if extra < 1.0 else "misses"
            print(f"{'':8} {mode:9} Redis hit - memory hit: {extra:+.2f} ms p50 ({verdict} < 1 ms)")


if __name__ == "__main__":
    main()
