"""The round-trip proxy (loadtests/delay_proxy.py) adds one round trip per exchange, in order."""

from __future__ import annotations

import time

import httpx

from loadtests.delay_proxy import DelayProxy
from tests.servers import Upstream


def timed_post(url: str, marker: str) -> tuple[float, httpx.Response]:
    began = time.perf_counter()
    with httpx.Client() as client:  # a fresh connection: its set-up is a round trip too
        response = client.post(
            url + "/v1/completions", json={"model": "m", "prompt": marker, "max_tokens": 2}
        )
    return time.perf_counter() - began, response


def test_each_exchange_costs_one_more_round_trip(upstream: Upstream) -> None:
    port = int(upstream.url.rsplit(":", 1)[1])
    # the local cost that the proxied call pays too, at its least: the process's first call
    # warms up the client and the server, and a shared machine can stall any one call, either of
    # which the direct time would subtract from the proxied one
    direct = min(timed_post(upstream.url, f"rtt-direct-{n}")[0] for n in range(3))
    with DelayProxy("127.0.0.1", port, rtt=0.2) as proxy:
        delayed, response = timed_post(f"http://127.0.0.1:{proxy.port}", "rtt-proxied")
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"]  # the whole answer came through
    assert upstream.find("rtt-proxied").path.endswith("/v1/completions")
    # the TCP handshake is local to the proxy; the request and its answer cross it once each
    assert 0.2 <= delayed - direct < 0.2 + 0.5, (direct, delayed)
    assert (proxy.connections, proxy.requests) == (1, 1)


def test_a_streamed_answer_arrives_whole_and_in_order(upstream: Upstream) -> None:
    port = int(upstream.url.rsplit(":", 1)[1])
    body = {"model": "m", "prompt": "rtt-stream", "max_tokens": 8, "stream": True}
    with httpx.stream("POST", upstream.url + "/v1/completions", json=body) as direct:
        expected = [line for line in direct.iter_lines() if line]
    with (
        DelayProxy("127.0.0.1", port, rtt=0.05) as proxy,
        httpx.stream("POST", f"http://127.0.0.1:{proxy.port}/v1/completions", json=body) as far,
    ):
        lines = [line for line in far.iter_lines() if line]

    def texts(chunks: list[str]) -> list[str]:
        return [c for c in chunks if '"text"' in c or c == "data: [DONE]"]

    assert len(texts(lines)) == len(texts(expected)) > 2
    assert lines[-1] == "data: [DONE]"
