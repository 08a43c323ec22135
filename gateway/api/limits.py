"""Rate limits and the headers that report them, applied by the gate before a request is parsed.

Every `/v1/` request takes one from its key's requests bucket and needs a token left; the
`x-ratelimit-*` headers OpenAI sends go on every `/v1/` response (when limits are on), and
`x-tandem-cache` on every completion response (`bypass` when the cache was never consulted).
"""

from __future__ import annotations

from typing import cast

from starlette.types import Scope

from gateway.api.keys import ApiKey
from gateway.api.state import AppState
from gateway.stores.ratelimit import Limits, refusal

COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")


async def admit(scope: Scope, state: AppState) -> None:
    """Raise `RateLimited` when the caller's key is over a limit."""
    limiter = state.cache.limiter
    if limiter is None or not scope["path"].startswith("/v1/"):
        return
    key: ApiKey | None = scope["state"].get("key")
    admission = await limiter.admit(key_id_of(key), own_limits(key, limiter.limits))
    scope["state"]["ratelimit_headers"] = admission.headers
    if not admission.allowed:
        raise refusal(admission)


def key_id_of(key: ApiKey | None) -> str | None:
    return None if key is None else key.key_id


def own_limits(key: ApiKey | None, default: Limits) -> Limits:
    """The key's own limits where it sets them, the global ones elsewhere."""
    if key is None or (key.rpm is None and key.tpm is None):
        return default
    return Limits(
        default.requests_per_minute if key.rpm is None else key.rpm,
        default.tokens_per_minute if key.tpm is None else key.tpm,
    )


def tandem_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The rate-limit and cache headers of the response about to start."""
    extra = [
        (name.encode(), value.encode())
        for name, value in scope["state"].get("ratelimit_headers", ())
    ]
    if scope["path"] in COMPLETION_PATHS:
        status = cast(str, scope["state"].get("cache", "bypass"))
        extra.append((b"x-tandem-cache", status.encode()))
    return extra
