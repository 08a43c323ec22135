"""Prometheus metrics, one registry per app (no module globals, so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.observability.metrics_batched import BatchedHistogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


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
        self.itl = BatchedHistogram(
            "tandem_inter_token_latency_seconds",
            "Time between consecutive streamed deltas of one request",
            ["model", "policy"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.large_calls = Counter(
            "tandem_large_model_calls",
            "Calls a policy made to the large model",
            ["model"],
            registry=r,
        )
        self.large_call_seconds = Histogram(
            "tandem_large_model_call_seconds",
            "Latency of the policy's calls to the large model",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.interventions = Counter(
            "tandem_interventions",
            "Spans the large model wrote in place of the small one",
            ["model"],
            registry=r,
        )
        self.degraded = Counter(
            "tandem_degraded_responses",
            "Responses served without the large model because it failed",
            ["model", "policy"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "tandem_upstream_errors",
            "Failures of a backend, by catalog name and error code",
            ["backend", "code"],
            registry=r,
        )
        self.cache_requests = Counter(
            "tandem_cache_requests",
            "Cache lookups by cache (response, ...) and result (hit, miss, bypass)",
            ["cache", "result"],
            registry=r,
        )
        self.redis_seconds = Histogram(
            "tandem_redis_operation_seconds",
            "Latency of Redis operations by operation and result (ok, error, timeout)",
            ["op", "result"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_outages = Counter(
            "tandem_redis_outages", "Times Redis became unavailable and was bypassed", registry=r
        )
        self.redis_up = Gauge("tandem_redis_up", "1 while Redis is being used", registry=r)
        self.rate_limited = Counter(
            "tandem_rate_limited",
            "Requests refused by a rate limit, by the limit that refused (requests, tokens)",
            ["limit"],
            registry=r,
        )
        self.replica_up = Gauge(
            "tandem_backend_replica_up",
            "1 while a replica of a backend that lists several is up, as last seen by a call or "
            "a health check",
            ["backend", "replica"],
            registry=r,
        )
        # one series per key and source: opt-in (TANDEM_METRICS_PER_KEY), for its cardinality
        self.per_key = False
        self.key_tokens = Counter(
            "tandem_key_tokens",
            "Completion tokens by API key name and source (with TANDEM_METRICS_PER_KEY)",
            ["key", "source"],
            registry=r,
        )

    def record(self, model: str, policy: str, status: int, seconds: float) -> None:
        self.requests.labels(model, policy, str(status)).inc()
        self.duration.labels(model, policy).observe(seconds)

    def record_replicas(self, states: Mapping[str, Mapping[str, bool]]) -> None:
        """Each backend's replicas (by host:port), up or not: set when metrics are scraped;
        the catalog declares them, so the series are few."""
        for backend, replicas in states.items():
            for replica, up in replicas.items():
                self.replica_up.labels(backend, replica).set(1 if up else 0)
