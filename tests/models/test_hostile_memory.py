"""Hostile bodies against the default catalog's real models, in `tandem serve`'s own process:
`tandem-collab` and `tandem-hawkeye` answer each with a 400 before a model runs, and the
process's resident memory stays within `RSS_GROWTH_BOUND`.

Before the context-window check and the request limits, one body of 2,000 empty messages took
the server from 0.8 to 3.2 GB and 20,000 messages to 5.9 GB (issue 19). The growth is measured
from after one small request: the models' first run alone takes the process from about 0.8 to
2.3 GB. Measured on the project's 2-core CPU machine: every body here is refused in 10-400 ms,
and the resident memory does not move.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.core.config import DEFAULT_CATALOG
from tests.servers import serve_process

MIB = 1024 * 1024
#: Parsing the largest body the server accepts (4 MiB) as Python objects, and tokenising a
#: prompt of a million characters twice, take some tens of MiB while they last; the allocator
#: keeps part of that. 256 MiB is several times that and a tenth of what one of these bodies
#: cost before.
RSS_GROWTH_BOUND = 256 * MIB
ROUNDS = 3


def body_of_messages(count: int, content: str = "") -> bytes:
    message = b'{"role":"user","content":"' + content.encode() + b'"}'
    return b'{"model":"%s","max_tokens":16,"messages":[' + b",".join([message] * count) + b"]}"


HOSTILE: dict[str, tuple[bytes, str | None]] = {
    # about 10k tokens in SmolLM2's template: over its 8,192-token window
    "2k-empty-messages": (body_of_messages(2000), "max_tokens"),
    # about 40k tokens: over both models' windows (and the planner's 32k)
    "2k-long-messages": (body_of_messages(2000, "word " * 16), "max_tokens"),
    "20k-empty-messages": (body_of_messages(20_000), None),  # 80k strings: the item count
    "3.6MB-string": (body_of_messages(1, "x" * (36 * MIB // 10)), "messages"),
    "4MiB-of-messages": (body_of_messages((4 * MIB - 100) // 33), None),
    "deep-nesting": (
        b'{"model":"%s","messages":[{"role":"user"}],"x":' + b"[" * MIB + b"]" * MIB + b"}",
        None,
    ),
}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, str]]:
    with serve_process(DEFAULT_CATALOG) as (process, url):
        yield process.pid, url


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_hostile_bodies_get_400s_and_memory_stays_bounded(served: tuple[int, str]) -> None:
    pid, url = served
    with httpx.Client(base_url=url, timeout=120) as client:
        ok = client.post(
            "/v1/chat/completions",
            json={
                "model": "tandem-collab",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2,
            },
        )
        assert ok.status_code == 200, ok.text  # both models have run once: they are warm
        before = rss(pid)
        for _ in range(ROUNDS):
            for name, (template, param) in HOSTILE.items():
                for alias in ("tandem-collab", "tandem-hawkeye"):
                    started = time.monotonic()
                    response = client.post(
                        "/v1/chat/completions",
                        content=template.replace(b"%s", alias.encode(), 1),
                        headers={"content-type": "application/json"},
                    )
                    seconds = time.monotonic() - started
                    assert response.status_code == 400, (name, alias, response.text[:300])
                    assert response.json()["error"]["param"] == param, (name, alias)
                    assert seconds < 10, (name, alias, seconds)
        grown = rss(pid) - before
    assert grown < RSS_GROWTH_BOUND, f"RSS grew by {grown / MIB:.0f} MiB"
