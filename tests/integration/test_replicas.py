"""An `openai` backend over a few replicas (`base_urls`): a token session's calls stick to one
replica and only a dead replica's sessions move; whole requests go to the replica with the
fewest outstanding; a stopped replica fails over with no failed request, and shows down in
`/readyz` and in `tandem_backend_replica_up`. The replicas are fake upstreams on loopback, each
recording its requests with their headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from openai import AsyncOpenAI
from pydantic import ValidationError

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.backends.openai_sessions import HTTPTokenSession, Remote
from gateway.backends.replicas import Replica, ReplicaSet
from gateway.core.errors import UpstreamUnavailable
from loadtests.fake_upstream import FakeConfig, FakeUpstream, ServerThread
from tests.servers import serve_gateway, write_catalog


class Fleet:
    """Fake upstreams, each in its own server thread; any one can be stopped."""

    def __init__(self, configs: list[FakeConfig]) -> None:
        self.fakes = [FakeUpstream(config) for config in configs]
        self.servers = [ServerThread(fake.app) for fake in self.fakes]
        self.urls: list[str] = []

    def __enter__(self) -> Fleet:
        for server in self.servers:
            server.__enter__()
            self.urls.append(f"{server.url}/v1")
        return self

    def stop(self, index: int) -> None:
        self.servers[index].__exit__(None, None, None)

    def restart(self, index: int) -> None:
        """The stopped replica again, on its own port."""
        port = int(self.urls[index].removesuffix("/v1").rsplit(":", 1)[1])
        self.servers[index] = ServerThread(self.fakes[index].app, port=port)
        self.servers[index].__enter__()

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            if server.thread.is_alive():
                server.__exit__(None, None, None)

    def where(self, header: str, value: str) -> set[int]:
        """The replicas that received a request with `header: value`."""
        return {
            i for i, fake in enumerate(self.fakes) for r in fake.records
            if r.headers.get(header) == value
        }  # fmt: skip

    def counts(self) -> list[int]:
        return [len(fake.records) for fake in self.fakes]

    async def recorded(self, total: int, within: float = 10.0) -> None:
        """Until the replicas have received `total` requests in all."""
        for _ in range(int(within / 0.01)):
            if sum(self.counts()) >= total:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{sum(self.counts())} requests reached the replicas, not {total}")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet([FakeConfig(), FakeConfig(), FakeConfig()]) as fleet:
        yield fleet


def config(urls: list[str], **extra: Any) -> OpenAIBackendConfig:
    return OpenAIBackendConfig(base_urls=urls, model="m", connect_timeout=1.0, **extra)


async def step(session: HTTPTokenSession, times: int) -> None:
    for _ in range(times):
        await session.next_distribution(1)


async def test_a_session_sticks_and_only_the_dead_replicas_sessions_move(fleet: Fleet) -> None:
    backend = OpenAIBackend("large", config(fleet.urls))
    await backend.start()
    try:
        keys = [f"session-{n}" for n in range(16)]
        sessions = [HTTPTokenSession(Remote(backend, key), [1, 2, 3]) for key in keys]
        await asyncio.gather(*(step(s, 3) for s in sessions))
        before = {key: fleet.where("x-session-id", key) for key in keys}
        assert all(len(places) == 1 for places in before.values())
        assert len(set.union(*before.values())) == 3  # 16 sessions spread over all three

        await asyncio.to_thread(fleet.stop, 0)
        await asyncio.gather(*(step(s, 2) for s in sessions))
        for key in keys:
            places = fleet.where("x-session-id", key)
            if before[key] == {0}:
                assert len(places - {0}) == 1  # moved once, to one survivor
            else:
                assert places == before[key]
        assert [state.up for state in backend.replica_states()] == [False, True, True]
    finally:
        await backend.aclose()


def relay_catalog(fleet: Fleet) -> dict[str, Any]:
    """`relay`: `direct` over one backend listing the fleet's replicas."""
    return {
        "backends": {"pair": {"kind": "openai", "base_urls": fleet.urls, "model": "m"}},
        "models": {"relay": {"policy": "direct", "backends": {"main": "pair"}}},
    }


def asker(client: AsyncOpenAI) -> Callable[[int], Awaitable[str | None]]:
    """Ask `relay` question `n`; its answer's text."""

    async def ask(n: int) -> str | None:
        answer = await client.chat.completions.create(
            model="relay", messages=[{"role": "user", "content": f"q{n}"}]
        )
        return answer.choices[0].message.content

    return ask


async def test_whole_requests_go_to_the_replica_with_the_fewest_outstanding(
    tmp_path: Path,
) -> None:
    with (
        Fleet([FakeConfig(ttft=60), FakeConfig()]) as fleet,
        serve_gateway(write_catalog(tmp_path, relay_catalog(fleet))) as url,
    ):
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as client:
            ask = asker(client)

            held = []  # until the slow replica holds one request, as it will for a minute
            while fleet.counts()[0] == 0:
                held.append(asyncio.create_task(ask(-1)))
                await fleet.recorded(len(held))
            fast = fleet.counts()[1]
            for n in range(8):  # one at a time: the other replica has none outstanding
                assert await asyncio.wait_for(ask(n), 10)
            assert fleet.counts() == [1, fast + 8]  # turn by turn would send it 4
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)


async def test_a_stopped_replica_fails_over_and_shows_down(tmp_path: Path) -> None:
    with (
        Fleet([FakeConfig(), FakeConfig()]) as fleet,
        serve_gateway(write_catalog(tmp_path, relay_catalog(fleet))) as url,
    ):
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as client:
            ask = asker(client)

            assert all(await asyncio.gather(*(ask(n) for n in range(6))))
            assert min(fleet.counts()) >= 1  # both served before one stops
            await asyncio.to_thread(fleet.stop, 0)
            served = fleet.counts()
            for n in range(10):  # one at a time: the pooled connection to it, then none
                assert await ask(n)
            assert fleet.counts()[1] == served[1] + 10
        async with httpx.AsyncClient(base_url=url) as http:
            ready = (await http.get("/readyz")).json()
            scraped = (await http.get("/metrics")).text
    dead, alive = fleet.urls
    assert ready["backends"]["pair"] == "ok"
    assert ready["replicas"] == {"pair": {dead: "down", alive: "up"}}
    address = dead.removeprefix("http://").removesuffix("/v1")
    assert f'tandem_backend_replica_up{{backend="pair",replica="{address}"}} 0.0' in scraped
    assert scraped.count("tandem_backend_replica_up{") == 2


async def test_a_health_check_finds_a_replica_down_then_up_again(fleet: Fleet) -> None:
    backend = OpenAIBackend("large", config(fleet.urls))
    await backend.start()
    try:
        await asyncio.to_thread(fleet.stop, 1)
        await backend.health()  # two of three answer: healthy
        assert [s.up for s in backend.replica_states()] == [True, False, True]
        await asyncio.to_thread(fleet.restart, 1)
        await backend.health()
        assert [s.up for s in backend.replica_states()] == [True, True, True]
        await asyncio.to_thread(fleet.stop, 0)
        await asyncio.to_thread(fleet.stop, 1)
        await asyncio.to_thread(fleet.stop, 2)
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await backend.health()
        assert not any(s.up for s in backend.replica_states())
    finally:
        await backend.aclose()


async def test_all_replicas_down_are_tried_anyway() -> None:
    now = [0.0]
    async with aiohttp.ClientSession() as client:
        a, b = Replica("http://a:1/v1", client), Replica("http://b:1/v1", client)
        replicas = ReplicaSet([a, b], cooldown=10, clock=lambda: now[0])
        replicas.mark_down(a)
        assert {replicas.pick(None) for _ in range(4)} == {b}
        assert replicas.pick("key", avoid=b) is a  # the only other one, though down
        replicas.mark_down(b)
        assert {replicas.pick(None) for _ in range(4)} == {a, b}
        now[0] = 10.0  # cooled down: tried again, still reported down until a call succeeds
        assert [s.up for s in replicas.states()] == [False, False]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "base_url .one server. or base_urls .replicas. is required"),
        ({"base_url": "http://a/v1", "base_urls": ["http://b/v1"]}, "both set"),
        ({"base_urls": []}, "at least 1 item"),
        ({"base_urls": [f"http://h{n}/v1" for n in range(17)]}, "at most 16 items"),
        ({"base_urls": ["http://a/v1", "ftp://b/v1"]}, "should match pattern"),
        ({"base_urls": ["http://a:80/v1", "http://a/x/v1"]}, "one host:port twice"),
        ({"base_urls": ["http://a/v1"], "replica_cooldown": 0}, "greater than 0"),
    ],
)
def test_a_bad_replica_list_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenAIBackendConfig(model="m", **fields)


async def test_replica_urls_are_shown_without_credentials() -> None:
    backend = OpenAIBackend("b", config(["http://user:pw@a:8000/v1", "https://b/v1"]))
    await backend.start()
    states = backend.replica_states()
    await backend.aclose()
    assert [(s.url, s.address) for s in states] == [
        ("http://a:8000/v1", "a:8000"),
        ("https://b/v1", "b:443"),
    ]
