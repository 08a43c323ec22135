"""Stores beside the request path: the key-value store (memory or Redis), the response cache and
the per-key rate limits. Redis trouble means a bypass and a metric, never a failed request."""
