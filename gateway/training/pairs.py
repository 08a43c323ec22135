"""The collab pair of a catalog alias, started as the server would start it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.api.routing import build_router
from gateway.core.config import CatalogError, load_catalog, settings_from_env
from gateway.policies.collab import CollabPolicy
from gateway.training.collect import Pair


@asynccontextmanager
async def catalog_pair(config: Path | None, alias: str) -> AsyncIterator[Pair]:
    settings = settings_from_env(config=config)
    source = str(settings.catalog_path())
    router = build_router(load_catalog(settings), source)
    route = router.routes.get(alias)
    if route is None or not isinstance(route.policy, CollabPolicy):
        collab = [a for a, r in router.routes.items() if isinstance(r.policy, CollabPolicy)]
        raise CatalogError(
            source, f"models.{alias}", f"not a collab alias; collab aliases: {collab or 'none'}"
        )
    backends = [route.policy.backends[role] for role in ("small", "large")]
    started = []
    try:
        for backend in backends:
            await backend.start()
            started.append(backend)
        small, large = route.policy.pair()
        yield Pair(small, large, backends[0].plain_chat, backends[1].plain_chat)
    finally:
        for backend in reversed(started):
            await backend.aclose()
