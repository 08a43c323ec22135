"""`GET /v1/models`: the catalog's aliases in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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
        },
    }


@router.get("/v1/models")
async def list_models(state: State) -> dict[str, Any]:
    routes = state.router.routes
    return {"object": "list", "data": [model_card(routes[a]) for a in state.router.aliases()]}


@router.get("/v1/models/{model:path}")
async def get_model(model: str, state: State) -> dict[str, Any]:
    route = state.router.routes.get(model)
    if route is None:
        raise ModelNotFound(model, state.router.aliases())
    return model_card(route)
