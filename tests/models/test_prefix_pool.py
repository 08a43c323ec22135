"""The prefix pool: a request that extends a finished session reads only its new tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.request import Sampling
from tests.models.conftest import started

PROMPT = [1, 504, 3575, 282, 4649, 314]


@pytest.fixture(scope="module")
def pooled(tiny_folder: Path) -> Iterator[LocalBackend]:
    config = TransformersConfig(model=str(tiny_folder), threads=1, prefix_cache=2)
    yield from started(TransformersBackend("pooled", config))


async def drained(backend: LocalBackend) -> None:
    await backend.worker.run(lambda: None)  # pool puts run on the worker, after session jobs


async def test_an_extension_continues_the_pooled_cache_with_the_same_numbers(
    pooled: LocalBackend, tiny: LocalBackend
) -> None:
    async with await pooled.open_session(PROMPT) as first:
        span = await first.generate(5)
    await drained(pooled)
    hits = pooled.prefix_pool.hits
    longer = PROMPT + span.ids + [13]
    async with await pooled.open_session(longer) as second:
        assert pooled.prefix_pool.hits == hits + 1
        # the pooled core read the prompt and 4 generated tokens; the 5th and 13 are new
        assert second._pending == [span.ids[-1], 13]  # type: ignore[attr-defined]
        reused = await second.next_distribution(5)
    async with await tiny.open_session(longer) as fresh:
        expected = await fresh.next_distribution(5)
    assert reused.ids == expected.ids
    assert reused.logprobs == pytest.approx(expected.logprobs, abs=1e-4)


async def test_a_prompt_that_diverges_gets_a_fresh_core(pooled: LocalBackend) -> None:
    async with await pooled.open_session(PROMPT) as first:
        await first.next_distribution(1)
    await drained(pooled)
    hits = pooled.prefix_pool.hits
    async with await pooled.open_session([1, 504, 9999]) as other:
        assert other._pending == [1, 504, 9999]  # type: ignore[attr-defined]
    assert pooled.prefix_pool.hits == hits


async def test_the_pool_is_bounded(pooled: LocalBackend) -> None:
    for n in range(5):
        async with await pooled.open_session([1, 100 + n, 7]) as session:
            await session.next_distribution(1)
    await drained(pooled)
    assert len(pooled.prefix_pool) == 2


async def test_a_reused_core_samples_as_a_fresh_one_with_the_same_seed(
    pooled: LocalBackend, tiny: LocalBackend
) -> None:
    sampling = Sampling(1.2, 1.0, 0, 42)
    async with await pooled.open_session(PROMPT) as warm:
        await warm.generate(3, sampling=sampling)
    await drained(pooled)
    async with await pooled.open_session(PROMPT) as again:
        reused = await again.generate(8, sampling=sampling)
    async with await tiny.open_session(PROMPT) as fresh:
        expected = await fresh.generate(8, sampling=sampling)
    assert reused.ids == expected.ids


async def test_a_session_that_failed_is_not_pooled(pooled: LocalBackend) -> None:
    pooled.prefix_pool.clear()
    session = await pooled.open_session([1, 2, 3])
    await session.append([10**9])  # out of the embedding table: the forward pass fails
    with pytest.raises(IndexError):
        await session.next_distribution(1)
    await session.close()
    await drained(pooled)
    assert len(pooled.prefix_pool) == 0
