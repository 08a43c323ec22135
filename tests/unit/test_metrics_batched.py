"""The batched inter-token histogram exposes exactly what prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.observability.metrics import ITL_BUCKETS
from gateway.observability.metrics_batched import BatchedHistogram

GAPS = [0.0004, 0.001, 0.0011, 0.01, 0.0100001, 0.07, 2.5, 3.0, 1e-9, 0.02]


def exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_same_buckets_count_and_sum_as_a_plain_histogram() -> None:
    plain_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    plain = Histogram("h_seconds", "doc", ["model"], buckets=ITL_BUCKETS, registry=plain_registry)
    batched = BatchedHistogram("h_seconds", "doc", ["model"], ITL_BUCKETS, batched_registry)
    for stream in (GAPS[:4], GAPS[4:], GAPS):  # three streams, added as each ends
        tally = batched.tally()
        for gap in stream:
            plain.labels("a").observe(gap)
            tally.observe(gap)
        batched.add(("a",), tally)
    plain.labels("b").observe(0.5)
    tally = batched.tally()
    tally.observe(0.5)
    batched.add(("b",), tally)
    assert exposition(batched_registry) == exposition(plain_registry)


def test_a_stream_without_gaps_adds_no_series() -> None:
    registry = CollectorRegistry()
    batched = BatchedHistogram("h_seconds", "doc", ["model"], ITL_BUCKETS, registry)
    batched.add(("a",), batched.tally())
    assert "h_seconds_count" not in generate_latest(registry).decode()
