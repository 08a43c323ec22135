"""The entropy a top-k-only backend reports (gateway/backends/openai_sessions.py)."""

from __future__ import annotations

import math

import pytest

from gateway.backends.openai_sessions import entropy_lower_bound, top_k_distribution


def exact(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


def test_a_flat_tail_is_counted_as_many_tokens_not_one() -> None:
    # uniform over 1000 tokens, five of them seen: the old bound (the rest as one token) said
    # 0.04 nats where the truth is 6.9
    flat = [1 / 1000] * 1000
    bound = entropy_lower_bound([math.log(p) for p in flat[:5]])
    assert bound == pytest.approx(exact(flat), rel=1e-9)


@pytest.mark.parametrize(
    "probs",
    [
        [0.9, 0.05, 0.02, 0.01] + [0.02 / 200] * 200,
        [0.3, 0.3, 0.2] + [0.2 / 3] * 3,
        [0.5, 0.25, 0.125, 0.0625, 0.0625],
        [0.99, 0.01],
        [0.4, 0.1] + [0.5 / 50] * 50,
    ],
)
def test_it_never_exceeds_the_exact_entropy_and_is_exact_when_all_is_seen(
    probs: list[float],
) -> None:
    ranked = sorted(probs, reverse=True)
    for k in range(1, len(ranked) + 1):
        bound = entropy_lower_bound([math.log(p) for p in ranked[:k]])
        assert bound <= exact(ranked) + 1e-9
    assert entropy_lower_bound([math.log(p) for p in ranked]) == pytest.approx(exact(ranked))


def test_the_distribution_keeps_k_and_bounds_with_all() -> None:
    ranked = [(i, math.log(1 / 100)) for i in range(20)]
    dist = top_k_distribution(ranked, 5)
    assert dist.ids == [0, 1, 2, 3, 4]
    assert len(dist.logprobs) == 5
    assert dist.entropy == pytest.approx(math.log(100))
