"""A client that leaves stops the work: the upstream stream is closed within a second."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import httpx

from tests.servers import Upstream

SLOW = {"chunks": 40, "itl": 0.25}


def test_stream_disconnect_closes_upstream_within_a_second(
    gateway_url: str, upstream: Upstream
) -> None:
    tag = uuid.uuid4().hex
    body = {
        "model": "relay",
        "stream": True,
        "user": tag,
        "fake": SLOW,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        left_at = time.monotonic()
    record = upstream.find(tag)
    record.wait_ended()
    assert record.disconnected
    assert record.ended is not None
    assert record.ended - left_at < 1.0


def test_non_streaming_disconnect_closes_upstream(gateway_url: str, upstream: Upstream) -> None:
    tag = uuid.uuid4().hex
    body = {
        "model": "relay",
        "user": tag,
        "fake": SLOW,
        "messages": [{"role": "user", "content": "hi"}],
    }

    def call() -> None:
        with contextlib.suppress(httpx.ReadTimeout):
            httpx.post(gateway_url + "/v1/chat/completions", json=body, timeout=0.6)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    left_at = time.monotonic()
    record = upstream.find(tag)
    record.wait_ended()
    assert record.disconnected
    assert record.ended is not None
    assert record.ended - left_at < 1.0
