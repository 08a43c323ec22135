"""One streamed chat completion, timed chunk by chunk, with aiohttp.

aiohttp rather than httpx: on this kind of machine it costs ~30 us per streamed chunk against
httpx's ~108 us, and the load generator shares a core with the fake upstream.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtests.stats import max_in_window


@dataclass
class Counters:
    """Live totals across all streams, read at the edges of the measured window."""

    events: int = 0  # every `data:` event, [DONE] included
    chunks: int = 0  # events that carry generated text


@dataclass
class Outcome:
    started: float
    ended: float = 0.0
    first_chunk: float | None = None
    chunks: int = 0
    gaps: list[float] = field(default_factory=list)
    max_burst: int = 0
    completion_tokens: int | None = None
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_chunk is None else self.first_chunk - self.started


def chat_body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something long."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 256,
    }


def _has_text(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        if (choice.get("delta") or {}).get("content") or choice.get("text"):
            return True
    return False


def _read_event(payload: bytes, outcome: Outcome, arrivals: list[float], now: float) -> None:
    event = json.loads(payload)
    if "error" in event:
        outcome.error = "in_band_error"
    elif _has_text(event):
        arrivals.append(now)
    if event.get("usage"):
        outcome.completion_tokens = event["usage"].get("completion_tokens")


async def _consume(response: aiohttp.ClientResponse, outcome: Outcome, counters: Counters) -> None:
    # Whole reads, split into events here: one timestamp per read (events that arrived together
    # are a burst, and should look like one) and a fraction of aiohttp's per-line cost.
    arrivals: list[float] = []
    done = False
    pending = b""
    async for data in response.content.iter_any():
        now = time.perf_counter()
        *events, pending = (pending + data).split(b"\n\n")
        for raw in events:
            if not raw.startswith(b"data:"):
                continue  # SSE comments such as keep-alives
            counters.events += 1
            payload = raw[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue
            before = len(arrivals)
            _read_event(payload, outcome, arrivals, now)
            counters.chunks += len(arrivals) - before
    outcome.chunks = len(arrivals)
    if arrivals:
        outcome.first_chunk = arrivals[0]
        outcome.gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        outcome.max_burst = max_in_window(arrivals)
    if outcome.error is None and not done:
        outcome.error = "no_done"


async def stream_once(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    counters: Counters,
    expected_chunks: int | None = None,
) -> Outcome:
    """POST a streaming request and time it; failures become `Outcome.error`, never raise."""
    outcome = Outcome(started=time.perf_counter())
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                outcome.error = f"http_{response.status}"
                await response.read()
            else:
                await _consume(response, outcome, counters)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        outcome.error = type(exc).__name__
    outcome.ended = time.perf_counter()
    wrong_length = expected_chunks is not None and outcome.chunks != expected_chunks
    if outcome.error is None and wrong_length:
        outcome.error = "wrong_chunk_count"
    return outcome


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # ends in /v1
    model: str
    pid: int | None = None  # the gateway process to measure; None for the direct path
    upstream_pid: int | None = None
