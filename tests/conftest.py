from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI, OpenAI

from loadtests.fake_upstream import FakeUpstream, ServerThread
from tests.servers import (
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    Upstream,
    catalog_for,
    serve_gateway,
    write_catalog,
)

# Gateways built in the test process keep Python's collector schedule: Tandem's would freeze and
# collect the heap of the whole test session at each start. A real `tandem serve` in
# tests/integration/test_process.py runs with Tandem's schedule.
os.environ.setdefault("TANDEM_GC_INTERVAL_SECONDS", "0")


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    fake = FakeUpstream()
    with ServerThread(fake.app) as server:
        yield Upstream(fake, server.url)


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Path:
    directory = tmp_path_factory.mktemp("catalog")
    write_catalog(directory, catalog_for(upstream.url))
    return directory


@pytest.fixture(scope="session")
def gateway_url(catalog_dir: Path, monkeypatch_session: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch_session.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    with serve_gateway(catalog_dir / "catalog.yaml", max_body_bytes=64 * 1024) as url:
        yield url


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def client(gateway_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def async_client(gateway_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk
