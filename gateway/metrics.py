"""Prometheus metrics, one registry per app (no module globals, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tandem_requests",
            "Requests by alias, policy and HTTP status",
            ["model", "policy", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "tandem_request_duration_seconds",
            "Time from request to last byte",
            ["model", "policy"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tandem_time_to_first_token_seconds",
            "Time from request to first visible delta",
            ["model", "policy"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tandem_tokens",
            "Completion tokens by alias and source",
            ["model", "source"],
            registry=r,
        )
        self.in_flight = Gauge("tandem_requests_in_flight", "Requests being served", registry=r)

    def record(self, model: str, policy: str, status: int, seconds: float) -> None:
        self.requests.labels(model, policy, str(status)).inc()
        self.duration.labels(model, policy).observe(seconds)
