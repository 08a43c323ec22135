"""Tandem's one exception hierarchy and its one mapping to the OpenAI error envelope.

```
TandemError                      500 internal_error
├── InvalidRequest               400 invalid_request_error (param names the field)
│   └── UnsupportedField         400 a policy cannot honour a request field
├── AuthenticationFailed         401 authentication_error
├── ModelNotFound                404 model_not_found, lists the aliases
├── RequestTimeout               408 the request body did not arrive in time
├── PayloadTooLarge              413 request body over the configured limit
├── UnsupportedMediaType         415 a model route's body is not declared JSON
├── RateLimited                  429 rate_limit_error
├── Overloaded                   503 the gateway sheds load
└── UpstreamError                502 a backend failed
    ├── UpstreamUnavailable      503 refused or unreachable (Retry-After)
    ├── UpstreamTimeout          504 no answer in time
    └── UpstreamBadResponse      502 an answer we cannot use
```

Messages are written for clients: they never carry a traceback, an internal host name or a
credential. Foreign exceptions are translated at the edge that sees them (the HTTP backend
translates aiohttp errors), so everything above the backends deals in these types only.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

#: the longest Retry-After a client is told (an hour): beyond it a number means "not soon"
MAX_RETRY_AFTER = 3600.0


class TandemError(Exception):
    """Base of every error Tandem reports to a client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after is None or math.isnan(self.retry_after):
            return {}
        return {"retry-after": str(round(min(max(self.retry_after, 1.0), MAX_RETRY_AFTER)))}


class InvalidRequest(TandemError):
    status = 400
    type = "invalid_request_error"


class UnsupportedField(InvalidRequest):
    default_code = "unsupported_field"

    def __init__(self, field: str, by: str, reason: str = "") -> None:
        """`by` names who refuses, e.g. "the 'collab' policy" or "backend 'echo'"."""
        detail = f": {reason}" if reason else ""
        super().__init__(f"'{field}' is not supported by {by}{detail}", param=field)


class AuthenticationFailed(TandemError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class ModelNotFound(TandemError):
    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "(none)"
        super().__init__(
            f"The model '{model}' does not exist. Available models: {names}", param="model"
        )


class RequestTimeout(TandemError):
    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(TandemError):
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMediaType(TandemError):
    status = 415
    type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimited(TandemError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class Overloaded(TandemError):
    status = 503
    type = "overloaded_error"
    default_code = "overloaded"


class UpstreamError(TandemError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"

    def __init__(
        self, message: str, *, backend: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.backend = backend


class UpstreamUnavailable(UpstreamError):
    status = 503
    default_code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


class UpstreamBadResponse(UpstreamError):
    default_code = "upstream_bad_response"


def internal_error() -> TandemError:
    """What a client sees for a bug: no detail, the log has the traceback."""
    return TandemError("The server had an error while processing your request.")
