"""What the API layer lends a policy for one request: the app's cache store, its metrics and
the caller's API key id.

Policies are built once per alias, before the app's state exists, so per-request services
reach them through a context variable that the handler sets around `policy.chat(...)`. A policy
reads it synchronously in `chat()` (not inside its event generator), so which task later
drives the stream does not matter. Outside a request (a policy driven directly in a test or a
benchmark) nothing is lent and `current()` returns `None`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gateway.observability.metrics import Metrics
from gateway.stores.cache import Store


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    metrics: Metrics
    key_id: str | None


_current: ContextVar[Services | None] = ContextVar("tandem_policy_services", default=None)


def current() -> Services | None:
    return _current.get()


@contextmanager
def lent(services: Services) -> Iterator[None]:
    token = _current.set(services)
    try:
        yield
    finally:
        _current.reset(token)
