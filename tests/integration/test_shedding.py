"""Load shedding on real uvicorn servers on loopback, with a slow fake upstream: the in-flight
limit, a disconnect watched from the moment the request is accepted, upstream deadlines, and
the request body's deadline."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import Upstream, serve_gateway, write_catalog

SLOW = {"chunks": 6, "itl": 0.3}  # about 1.8 s of stream


def backend(upstream: Upstream, **settings: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": f"{upstream.url}/v1", "model": "m", **settings}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[str]:
    catalog = {
        "backends": {
            "up": backend(upstream),
            "one": backend(upstream, max_connections=1, pool_timeout=0.3),
            "capped": backend(upstream, total_timeout=1.0, read_timeout=5.0),
        },
        "models": {
            name: {"policy": "direct", "backends": {"main": name}}
            for name in ("up", "one", "capped")
        },
    }
    path = write_catalog(tmp_path_factory.mktemp("shedding"), catalog)
    with serve_gateway(path, max_in_flight=2, body_timeout_seconds=0.5) as served:
        yield served


def body(model: str = "up", stream: bool = True, **fake: Any) -> dict[str, Any]:
    return {
        "model": model,
        "stream": stream,
        "user": uuid.uuid4().hex,
        "fake": fake or SLOW,
        "messages": [{"role": "user", "content": "hi"}],
    }


@contextlib.contextmanager
def streaming(url: str, request: dict[str, Any]) -> Iterator[None]:
    """A stream in flight (its first chunk read) until the block ends."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        yield
        for _ in lines:
            pass


def post(url: str, request: dict[str, Any], timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=request, timeout=timeout)


def test_past_the_in_flight_limit_a_503_comes_at_once(url: str) -> None:
    with streaming(url, body()), streaming(url, body()):
        started = time.monotonic()
        response = post(url, body(stream=False))
        assert time.monotonic() - started < 0.5, "refused at once, not queued"
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("overloaded_error", "overloaded")
    assert post(url, body(stream=False, chunks=2)).status_code == 200, "the slots came back"


def test_a_client_that_leaves_before_the_first_token_cancels_the_call(
    url: str, upstream: Upstream
) -> None:
    request = body(ttft=5.0, chunks=2)

    def leave_early() -> None:
        with contextlib.suppress(httpx.ReadTimeout):
            post(url, request, timeout=0.5)

    thread = threading.Thread(target=leave_early)
    thread.start()
    thread.join()
    left_at = time.monotonic()
    record = upstream.find(request["user"])
    record.wait_ended(within=8)
    assert record.disconnected
    assert record.ended is not None
    assert record.ended - left_at < 1.5, "the upstream call was dropped, not waited out"


def test_waiting_for_a_pooled_connection_is_bounded(url: str) -> None:
    with streaming(url, body("one")):
        started = time.monotonic()
        response = post(url, body("one", stream=False, chunks=1))
        waited = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert waited < 1.2, waited  # the pool's 0.3 s, not the 1.8 s the stream holds it


def test_an_upstream_call_has_a_total_deadline(url: str) -> None:
    started = time.monotonic()
    # never 5 s without a chunk, so only the 1 s total deadline ends it
    response = post(url, body("capped", stream=False, chunks=20, itl=0.2))
    waited = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert 0.9 < waited < 2.0, waited


def test_a_body_that_does_not_arrive_in_time_is_a_408(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            b'{"model": "up", '
        )
        started = time.monotonic()
        answer = sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"request_timeout" in answer
    assert waited < 2.0, waited
