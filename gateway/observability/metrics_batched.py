"""A Prometheus histogram that a stream fills in private and adds to once, when it ends.

`tandem_inter_token_latency_seconds` takes one observation per streamed chunk, and a
prometheus_client `Histogram` takes a lock twice per observation. Here a stream counts its
gaps in a plain list (`Tally`) and `add` merges them under one lock per stream. Scrapes see a
stream's gaps once it has ended, which is when its latencies are complete anyway.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class Tally:
    """One stream's observations: counts per bucket and their sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bucket i holds values <= bounds[i] (Prometheus' `le`), the last bound is +Inf
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value

    def merge(self, other: Tally) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total


class BatchedHistogram:
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = (*sorted(buckets), math.inf)
        self._series: dict[tuple[str, ...], Tally] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def tally(self) -> Tally:
        return Tally(self.bounds)

    def add(self, labels: tuple[str, ...], tally: Tally) -> None:
        if not any(tally.counts):
            return
        with self._lock:
            self._series.setdefault(labels, self.tally()).merge(tally)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(labels, list(t.counts), t.total) for labels, t in self._series.items()]
        for labels, counts, total in series:
            cumulative, buckets = 0, []
            for bound, n in zip(self.bounds, counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(labels), buckets, sum_value=total)
        yield family
