"""llama.cpp's next-token distributions against a float64 reference computed the plain way."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.backends.llamacpp_dist import NextToken, top_ids

SIZES = [49_152, 262_144, 100, 5]  # SmolLM2's and Gemma-3's vocabularies, and rows too small
#: for the block bound (fewer 64-token blocks than k)


def reference(row: np.ndarray) -> tuple[np.ndarray, float]:
    """Log-probs and entropy in float64."""
    values = row.astype(np.float64)
    logprobs = values - values.max()
    logprobs -= np.log(np.exp(logprobs).sum())
    probs = np.exp(logprobs)
    return logprobs, float(-(probs * np.where(probs > 0, logprobs, 0.0)).sum())


def reference_top(row: np.ndarray, k: int) -> list[int]:
    # ranked by the shifted float32 values the log-probs come from: subtracting the maximum
    # can round two near values into a tie, which then goes in id order
    shifted = row - row.max()
    return [int(i) for i in np.argsort(-shifted.astype(np.float64), kind="stable")[:k]]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scale", [0.5, 4.0, 40.0])  # flat to peaked
def test_logprobs_entropy_and_top_k_match_the_reference(size: int, scale: float) -> None:
    row = (np.random.default_rng(size).standard_normal(size) * scale).astype(np.float32)
    logprobs, entropy = reference(row)
    dist = NextToken(row)
    assert dist.entropy == pytest.approx(entropy, abs=1e-4)
    assert np.abs(dist.logprobs() - logprobs).max() < 1e-4
    # the whole row ranked only where it is short: the check itself is slow on 262k tokens
    for k in (1, 8, 64) if size > 1000 else (1, 8, size + 3):
        best = dist.top(k)
        assert [i for i, _ in best] == reference_top(row, k)
        assert [lp for _, lp in best] == pytest.approx([logprobs[i] for i, _ in best], abs=1e-4)
    assert dist.best() == reference_top(row, 1)[0]
    assert dist.top(0) == []


def test_the_row_is_copied_since_llama_cpp_reuses_its_buffer() -> None:
    row = np.array([0.0, 1.0, 2.0], dtype=np.float32)
    dist = NextToken(row)
    row[:] = [9.0, 0.0, 0.0]
    assert dist.best() == 2
    assert dist.logprob(0) < dist.logprob(2)


def test_ties_come_in_id_order_and_many_ties_still_give_k() -> None:
    row = np.zeros(4096, dtype=np.float32)
    row[[7, 3000, 11]] = 1.0
    assert top_ids(row, 2).tolist() == [7, 11]
    assert top_ids(row, 5).tolist() == [7, 11, 3000, 0, 1]
    flat = NextToken(np.zeros(1000, dtype=np.float32))
    assert flat.entropy == pytest.approx(np.log(1000))
    assert flat.logprob(5) == pytest.approx(-np.log(1000))


def test_a_minus_infinity_logit_counts_as_probability_zero() -> None:
    row = np.array([0.0, 0.0, -np.inf, 0.0], dtype=np.float32)
    dist = NextToken(row)
    assert dist.entropy == pytest.approx(np.log(3))
    assert [i for i, _ in dist.top(4)] == [0, 1, 3, 2]
