"""Drafting on a small model whose cache has sliding-window layers (Gemma-3's kind): past the
window, transformers cannot crop such a layer, so a rewind starts the cache again instead of
ending the answer mid-stream."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.models import prepare
from gateway.policies.rewind import rewind
from tests.policies.conftest import run_collab, started
from tests.policies.fakes import scripted
from tests.tiny import tiny_sliding_model

WINDOW = 4


@pytest.fixture(scope="module")
def sliding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    folder = tmp_path_factory.mktemp("tiny-sliding")
    tiny_sliding_model(folder, Path(prepare("smollm2-135m").location), seed=5, window=WINDOW)
    config = TransformersConfig(model=str(folder), threads=1, prefix_cache=0)
    yield from (backend for [backend] in started([TransformersBackend("sliding", config)]))


async def test_a_rewind_past_the_window_gives_what_a_fresh_session_gives(
    sliding: LocalBackend,
) -> None:
    prompt = sliding.tokenizer.encode("Once upon a time there was")
    async with await sliding.open_session(prompt) as session:
        span = await session.generate(3 * WINDOW)
        await rewind(session, len(prompt) + WINDOW + 2)
        rewound = await session.next_distribution(5)
    async with await sliding.open_session(prompt + span.ids[: WINDOW + 2]) as fresh:
        expected = await fresh.next_distribution(5)
    assert rewound.ids == expected.ids
    for a, b in zip(rewound.logprobs, expected.logprobs, strict=True):
        assert math.isclose(a, b, abs_tol=1e-4)


async def test_drafting_on_a_sliding_window_model_keeps_the_text(
    sliding: LocalBackend, tiny_pair: list[LocalBackend]
) -> None:
    _, large, _ = tiny_pair  # SmolLM2's tokenizer too: token ids cross the seam
    slow = scripted(large, delay=0.03)
    # every token is the large model's, and the small model drafts (and rewinds) meanwhile
    plain = await run_collab(sliding, slow, {"trigger": "always", "draft": 0}, max_tokens=24)
    drafted = await run_collab(sliding, slow, {"trigger": "always", "draft": 4}, max_tokens=24)
    assert plain.report.interventions > 0
    assert drafted.extra["drafted"] > drafted.extra["draft_kept"]  # some drafts were rewound
    assert drafted.text() == plain.text()
    assert drafted.report.degraded is False
