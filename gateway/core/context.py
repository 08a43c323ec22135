"""What one request carries across layers: its id (forwarded upstream) and the facts its access
log line, metrics and trace are made of."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import perf_counter

# An id a client sends is echoed back and forwarded upstream, so it must be a harmless token.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id: ContextVar[str | None] = ContextVar("tandem_request_id", default=None)


def accept_request_id(offered: str | None) -> str:
    if offered and SAFE_REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


@dataclass
class RequestFacts:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=perf_counter)
    model: str = "-"
    policy: str = "-"
    status: int = 500
    answered: bool = False  # the response has started
    stream: bool = False
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    degraded: bool = False
    error_code: str | None = None
    key_name: str | None = None  # the API key's name, never the key

    def elapsed(self) -> float:
        return perf_counter() - self.started
