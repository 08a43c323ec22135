"""Observability beside the request path: Prometheus metrics, traces, structured logs and the
garbage collector's schedule."""
