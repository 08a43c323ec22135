"""Next-token distributions from llama.cpp's logits rows, in few passes over the vocabulary.

Gemma-3's vocabulary has 262,144 tokens, so each pass over a row costs 0.02-0.12 ms here, and
a collab step (a forward pass of 15-60 ms) asks for log-probs, the top-k and the entropy, and
must stay within 5% of the bare forward pass. A row is read in five vectorised passes (max,
shift, exp, sum, dot). The top-k is found among the few tokens at or above the k-th largest
maximum of 64 interleaved groups (the row read as 64 rows, maxima down the columns: one pass
numpy vectorises, where maxima of 64-token blocks took ten times as long).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gateway.core.request import Sampling

Array = np.ndarray[Any, np.dtype[Any]]
GROUPS = 64


class NextToken:
    """One position's distribution. `shifted` is the row minus its maximum (a copy: llama.cpp
    reuses its logits buffer); a log-prob is a shifted logit minus `log_total`."""

    __slots__ = ("entropy", "log_total", "shifted")

    def __init__(self, row: Array) -> None:
        shifted: Array = row - row.max()
        exp = np.exp(shifted)
        total = float(exp.sum())  # numpy sums float32 pairwise: ~1e-7 relative
        self.shifted = shifted
        self.log_total = math.log(total)
        # -sum(p log p) with p = exp/total and log p = shifted - log_total
        with np.errstate(invalid="ignore"):
            weighted = float(np.dot(exp, shifted))
        if not math.isfinite(weighted):  # a -inf logit: its 0 * -inf counts as 0
            weighted = float(np.dot(exp, np.where(exp > 0, shifted, 0)))
        self.entropy = self.log_total - weighted / total

    def logprob(self, token: int) -> float:
        return float(self.shifted[token]) - self.log_total

    def logprobs(self) -> Array:
        out: Array = self.shifted - np.float32(self.log_total)
        return out

    def best(self) -> int:
        return int(np.argmax(self.shifted))

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k likeliest tokens, likeliest first; ties in id order."""
        if k <= 0:
            return []
        ids = top_ids(self.shifted, k)
        return [(int(i), float(self.shifted[i]) - self.log_total) for i in ids]


def top_ids(values: Array, k: int) -> Array:
    """Indices of the k largest values, largest first (ties: lower index first)."""
    k = min(k, values.size)
    width = values.size // GROUPS
    if width >= k:
        # each column's maximum is a value of the row: the k-th largest of them is a lower
        # bound of the row's k-th largest value, and few values pass it
        maxima = values[: width * GROUPS].reshape(GROUPS, width).max(axis=0)
        bound = np.partition(maxima, width - k)[width - k]
        candidates = np.flatnonzero(values >= bound)
    else:
        candidates = np.arange(values.size)
    order = np.argsort(-values[candidates], kind="stable")[:k]
    picked: Array = candidates[order]
    return picked


def sample(logprobs: Array, sampling: Sampling, rng: np.random.Generator) -> int:
    scaled = logprobs.astype(np.float64) / sampling.temperature
    if sampling.top_k:
        kth = np.partition(scaled, -min(sampling.top_k, scaled.size))[
            -min(sampling.top_k, scaled.size)
        ]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    if sampling.top_p < 1.0:
        order = np.argsort(-scaled, kind="stable")
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        # drop a token once the ones before it already cover top_p
        drop = np.cumsum(probs) - probs > sampling.top_p
        scaled[order[drop]] = -np.inf
    probs = np.exp(scaled - scaled.max())
    return int(rng.choice(scaled.size, p=probs / probs.sum()))
