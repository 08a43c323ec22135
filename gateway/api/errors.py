"""The one mapping from failures to HTTP responses with the OpenAI error envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.core.errors import InvalidRequest, TandemError, internal_error

log = logging.getLogger(__name__)

# pydantic names the branch of a union that failed; a client wants the field's name only
UNION_BRANCHES = {"str", "int", "float", "bool", "none", "bytes", "dict", "list"}


def error_response(exc: TandemError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def validation_error(errors: list[Any]) -> TandemError:
    """A pydantic/FastAPI error list as one 400 naming the first offending field."""
    if not errors:
        return InvalidRequest("The request body is not valid.")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        )
    loc = [part for part in first.get("loc", ()) if part != "body"]
    param = param_path(loc)
    message = str(first.get("msg", "invalid value"))
    if param:
        return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)
    return InvalidRequest(f"The request body is not valid: {message}")


def param_path(loc: list[Any]) -> str | None:
    """['messages', 0, 'content'] -> 'messages[0].content'; union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "-" in str(part) or part in UNION_BRANCHES:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or None


async def _tandem_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TandemError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(list(exc.errors())))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = InvalidRequest(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(internal_error())


def install(app: FastAPI) -> None:
    app.add_exception_handler(TandemError, _tandem_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
