"""Opt-in CORS: the origins in `TANDEM_CORS_ORIGINS` may call the API from a browser page.

Off by default: a gateway on a laptop answers no cross-origin page, and the model routes take
only JSON bodies (gateway/api/hot.py), which a page cannot send to another origin without a
preflight. A preflight is answered here, before the gate: it carries no key and no body.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

#: what a page may send: the key, the JSON type, its own request id
ALLOWED_HEADERS = ["authorization", "content-type", "x-request-id"]
#: what a page may read besides the CORS-safelisted headers
EXPOSED_HEADERS = [
    "x-request-id",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-tandem-cache",
]


def with_cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    """`app` behind CORS for `origins` ("*": any), or `app` itself when there are none."""
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        # keys travel in a header the page sets, never in cookies
        allow_credentials=False,
        max_age=600,
    )
