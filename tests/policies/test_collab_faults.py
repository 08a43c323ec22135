"""A large model that fails, hangs, is slow or unreachable: the small model's own tokens are
used, the response says `degraded`, and a breaker stops asking for a while. Never a failure."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from tests.policies.conftest import collab, run_collab
from tests.policies.fakes import scripted
from tests.policies.test_collab_loop import SOMETIMES, alone
from tests.servers import closed_port


@pytest.mark.parametrize("draft", [0, 4])
async def test_a_failing_large_model_degrades_to_the_small_one(
    tiny_pair: list[LocalBackend], draft: int
) -> None:
    small, large, _ = tiny_pair
    failing = scripted(large, mode="fail")
    out = await run_collab(small, failing, {**SOMETIMES, "draft": draft}, max_tokens=24)
    assert out.text() == await alone(small, 24)
    assert out.report.degraded
    assert out.report.tokens == {"small": 24, "large": 0}
    assert out.extra["large_failures"] == 3  # then the breaker opens
    assert out.extra["breaker_skips"] > 0
    assert failing.script.calls == 3
    assert out.finishes[0].reason == "length"


async def test_a_hanging_large_model_costs_one_deadline_per_failure(
    tiny_pair: list[LocalBackend],
) -> None:
    small, large, _ = tiny_pair
    began = time.perf_counter()
    params = {**SOMETIMES, "deadline": 0.2, "breaker_failures": 2}
    out = await run_collab(small, scripted(large, mode="hang"), params, max_tokens=24)
    elapsed = time.perf_counter() - began
    assert out.text() == await alone(small, 24)
    assert out.report.degraded
    assert out.extra["large_failures"] == 2
    assert all(0.2 <= s < 0.6 for s in out.report.large_call_seconds)
    assert elapsed < 2 * 0.2 + 3.0  # the rest is the tiny model's own pace


async def test_a_slow_large_model_past_its_deadline_leaves_the_drafted_token(
    tiny_pair: list[LocalBackend],
) -> None:
    small, large, _ = tiny_pair
    params = {**SOMETIMES, "deadline": 0.1, "draft": 4}
    out = await run_collab(small, scripted(large, delay=0.5), params, max_tokens=24)
    assert out.text() == await alone(small, 24)
    assert out.report.degraded
    assert out.extra["draft_kept"] == out.extra["large_failures"]  # one draft per failure


async def test_the_breaker_lets_the_large_model_back_after_its_cooldown(
    tiny_pair: list[LocalBackend],
) -> None:
    small, large, _ = tiny_pair
    flaky = scripted(large, mode="fail")
    policy = collab(small, flaky)
    params = {**SOMETIMES, "breaker_failures": 1, "breaker_cooldown": 0.3}
    first = await run_collab(small, flaky, params, policy=policy, max_tokens=24)
    assert first.extra["large_failures"] == 1
    flaky.script.mode = "ok"
    still_open = await run_collab(small, flaky, params, policy=policy, max_tokens=24)
    assert still_open.report.degraded
    assert still_open.extra["large_failures"] == 0  # skipped, not tried
    await asyncio.sleep(0.3)
    healed = await run_collab(small, flaky, params, policy=policy, max_tokens=24)
    assert not healed.report.degraded
    assert healed.report.tokens["large"] > 0


async def test_an_unreachable_http_large_model(tiny_pair: list[LocalBackend]) -> None:
    small = tiny_pair[0]
    url = f"http://127.0.0.1:{closed_port()}/v1"
    down = OpenAIBackend("down", OpenAIBackendConfig(base_url=url, model="m", connect_timeout=1))
    await down.start()
    try:
        out = await run_collab(small, down, SOMETIMES, max_tokens=24)
    finally:
        await down.aclose()
    assert out.text() == await alone(small, 24)
    assert out.report.degraded
    assert out.extra["large_failures"] == 3
