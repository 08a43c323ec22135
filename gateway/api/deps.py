"""Typed dependencies: handlers reach the app's state through these, never through globals."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from gateway.api.state import AppState


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, per request
    return cast(AppState, request.app.state.tandem)


State = Annotated[AppState, Depends(get_state)]
