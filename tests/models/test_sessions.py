"""Token-session bookkeeping on a tiny random model that uses SmolLM2's real tokenizer."""

from __future__ import annotations

import math

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.sessions import SessionClosed, Stop
from gateway.core.request import Sampling

PROMPT = [1, 504, 3575, 282, 4649, 314]


async def test_appending_equals_opening_with_the_whole_prefix(tiny: LocalBackend) -> None:
    async with await tiny.open_session(PROMPT[:2]) as grown:
        await grown.append(PROMPT[2:4])
        await grown.next_distribution(3)  # read part of it, then append the rest
        await grown.append(PROMPT[4:])
        stepwise = await grown.next_distribution(5)
        assert grown.ids == PROMPT
    async with await tiny.open_session(PROMPT) as whole:
        direct = await whole.next_distribution(5)
    assert stepwise.ids == direct.ids
    assert stepwise.logprobs == pytest.approx(direct.logprobs, abs=1e-4)
    assert stepwise.entropy == pytest.approx(direct.entropy, abs=1e-4)


async def test_distribution_is_sorted_normalised_and_its_entropy_is_the_vocabularys(
    tiny: LocalBackend,
) -> None:
    async with await tiny.open_session(PROMPT) as session:
        dist = await session.next_distribution(10)
    assert len(dist.ids) == 10
    assert dist.logprobs == sorted(dist.logprobs, reverse=True)
    assert sum(math.exp(lp) for lp in dist.logprobs) <= 1.0 + 1e-6
    vocab = len(tiny.tokenizer.get_vocab())
    # entropy over the whole vocabulary: positive, at most log(V), and not just the top-k's
    assert 0 < dist.entropy <= math.log(vocab) + 1e-3
    top_only = -sum(math.exp(lp) * lp for lp in dist.logprobs)
    assert dist.entropy != pytest.approx(top_only, rel=1e-3)


async def test_scores_are_the_log_probs_a_step_by_step_walk_sees(tiny: LocalBackend) -> None:
    async with await tiny.open_session(PROMPT[:3]) as walker:
        expected = []
        for token in PROMPT[3:]:
            dist = await walker.next_distribution(50_000)
            expected.append(dist.logprobs[dist.ids.index(token)])
            await walker.append([token])
    async with await tiny.open_session(PROMPT[:3]) as scorer:
        scores = await scorer.score(PROMPT[3:], k=2)
    assert [s.id for s in scores] == PROMPT[3:]
    assert [s.logprob for s in scores] == pytest.approx(expected, abs=1e-4)
    assert all(len(s.top) == 2 and s.top[0][1] >= s.logprob for s in scores)


async def test_greedy_generate_matches_steps_and_stops_at_stop_ids(tiny: LocalBackend) -> None:
    async with await tiny.open_session(PROMPT) as a:
        span = await a.generate(12, k=3)
    assert span.finish == "length"
    assert len(span.ids) == 12
    assert a.ids == PROMPT + span.ids
    async with await tiny.open_session(PROMPT) as b:
        stopped = await b.generate(12, Stop(ids={span.ids[4]}))
    assert stopped.finish == "stop"
    assert stopped.ids == span.ids[: span.ids.index(span.ids[4]) + 1]


async def test_stop_strings_end_the_span_with_the_token_that_completes_them(
    tiny: LocalBackend,
) -> None:
    decode = tiny.tokenizer.decode
    async with await tiny.open_session(PROMPT) as a:
        free = await a.generate(16)
    stop = decode(free.ids[5:7])
    async with await tiny.open_session(PROMPT) as b:
        span = await b.generate(16, Stop(strings=[stop]), decode=lambda ids: decode(ids))
    assert span.finish == "stop"
    assert stop in decode(span.ids)
    assert stop not in decode(span.ids[:-1])


async def test_seeded_sampling_repeats_and_different_seeds_differ(tiny: LocalBackend) -> None:
    async def sample(seed: int) -> list[int]:
        async with await tiny.open_session(PROMPT) as session:
            span = await session.generate(16, sampling=Sampling(1.5, 0.95, 0, seed))
            return span.ids

    first = await sample(7)
    assert await sample(7) == first
    assert await sample(8) != first


async def test_top_k_one_is_greedy(tiny: LocalBackend) -> None:
    async with await tiny.open_session(PROMPT) as a:
        greedy = (await a.generate(8)).ids
    async with await tiny.open_session(PROMPT) as b:
        sampled = (await b.generate(8, sampling=Sampling(1.0, 1.0, 1, 3))).ids
    assert sampled == greedy


async def test_hidden_state_is_the_last_layers(tiny: LocalBackend) -> None:
    async with await tiny.open_session(PROMPT, hidden=True) as session:
        dist = await session.next_distribution(1)
    assert dist.hidden is not None
    assert len(dist.hidden) == 64
    assert any(abs(x) > 0 for x in dist.hidden)
    async with await tiny.open_session(PROMPT) as plain:
        assert (await plain.next_distribution(1)).hidden is None


async def test_a_closed_session_refuses_work_and_frees_its_slot(tiny: LocalBackend) -> None:
    before = tiny.worker.open_sessions
    session = await tiny.open_session(PROMPT)
    assert tiny.worker.open_sessions == before + 1
    await session.close()
    await session.close()  # idempotent
    assert tiny.worker.open_sessions == before
    with pytest.raises(SessionClosed):
        await session.next_distribution(1)
    with pytest.raises(SessionClosed):
        await session.append([5])


async def test_an_error_inside_async_with_still_closes(tiny: LocalBackend) -> None:
    before = tiny.worker.open_sessions
    with pytest.raises(RuntimeError, match="boom"):
        async with await tiny.open_session(PROMPT):
            raise RuntimeError("boom")
    assert tiny.worker.open_sessions == before


async def test_session_steps_run_off_the_event_loop(tiny: LocalBackend) -> None:
    import asyncio

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        async with await tiny.open_session(PROMPT * 40) as session:
            await session.generate(8)
    finally:
        task.cancel()
    assert ticks > 8  # the loop kept running while the model computed
