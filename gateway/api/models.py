"""`GET /v1/models`: the catalog's aliases in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import State
from gateway.api.routing import Route
from gateway.core.errors import ModelNotFound

router = APIRouter()


def model_card(route: Route) -> dict[str, Any]:
    return {
        "id": route.alias,
        "object": "model",
        "created": route.created,
        "owned_by": "tandem",
        "tandem": {
            "policy": route.policy.name,
            "roles": sorted(route.spec.backends),
            "description": route.spec.description,
            # what a request may set in `tandem` on this alias, and within what
            "overrides": {
                key: rule.model_dump(exclude_none=True)
                for key, rule in route.spec.overrides.items()
            },
        },
    }


@router.get("/v1/models")
async def list_models(request: Request, state: State) -> dict[str, Any]:
    """The aliases the caller's key may use."""
    routes, key = state.router.routes, request.state.key
    return {"object": "list", "data": [model_card(routes[a]) for a in state.router.aliases(key)]}


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request, state: State) -> dict[str, Any]:
    key = request.state.key
    route = state.router.routes.get(model)
    if route is None or (key is not None and not key.may_use(model)):
        raise ModelNotFound(model, state.router.aliases(key))
    return model_card(route)
