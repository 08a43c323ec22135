"""Latency summaries and burst detection over the samples one scenario collected."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A chunk that arrives within this much of the previous one was relayed in a batch, not streamed:
# the fake upstream spaces chunks by its ITL (10 ms in the anchors), far above this.
BURST_GAP_S = 0.001


@dataclass(frozen=True)
class Summary:
    """Percentiles of one latency, in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples (q in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def summarise(samples_s: Sequence[float]) -> Summary:
    """Summary in ms of samples taken in seconds; NaN everywhere when there are none."""
    ordered = sorted(samples_s)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    ms = 1000.0
    return Summary(
        count=len(ordered),
        mean=sum(ordered) / len(ordered) * ms,
        p50=percentile(ordered, 50) * ms,
        p95=percentile(ordered, 95) * ms,
        p99=percentile(ordered, 99) * ms,
        max=ordered[-1] * ms,
    )


def max_in_window(arrivals: Sequence[float], window_s: float = BURST_GAP_S) -> int:
    """The most chunks of one stream that arrived within any `window_s` (1 when none bunch)."""
    best = 0
    start = 0
    for end, t in enumerate(arrivals):
        while t - arrivals[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
