"""Tandem's schedule for Python's cycle collector (gateway/observability/collector.py), and the
fact it rests on: a request leaves no reference cycle behind, so waiting for the timer costs no
memory."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import httpx

from gateway.core.context import RequestFacts
from gateway.observability.collector import NEVER, Collector


def requests_of_each_kind(url: str) -> None:
    chat = {"model": "relay", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=url, timeout=10) as client:
        for stream in (False, True):
            assert client.post("/v1/chat/completions", json={**chat, "stream": stream}).is_success
            completion = {"model": "relay", "prompt": "hi", "stream": stream}
            assert client.post("/v1/completions", json=completion).is_success


def test_requests_leave_no_reference_cycles(gateway_url: str) -> None:
    requests_of_each_kind(gateway_url)  # warm: first-use caches are not garbage
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage
    try:
        requests_of_each_kind(gateway_url)
        time.sleep(0.2)  # the server thread lets go of the last request after answering it
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, RequestFacts)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert leaked == [], f"{len(leaked)} of 8 requests ended as reference cycles"


async def test_collectors_freeze_the_heap_collect_on_their_timer_and_give_it_back() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    generations: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            generations.append(info["generation"])

    first, second = Collector(0.05), Collector(0.05)
    gc.callbacks.append(seen)
    try:
        first.start()
        second.start()  # a second app in the process, as in these tests
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[1:] == (NEVER, NEVER)
        generations.clear()
        await asyncio.sleep(0.3)
        assert generations.count(2) >= 4, "both timers run full collections"
        await first.stop()
        assert gc.get_threshold()[1:] == (NEVER, NEVER), "the second app still needs it"
        await second.stop()
    finally:
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before_threshold
    assert gc.get_freeze_count() == before_frozen
