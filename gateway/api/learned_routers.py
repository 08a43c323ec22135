"""The catalog's `routers`: learned-trigger routers by name, read and checked at start-up.

A request or an alias names a router; only the catalog says which file that is, so no request
can make the server read a path of its choosing. Each file is read once, here: every policy
and every trigger built for a request's threshold shares the loaded router.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway.core.config import CatalogError

if TYPE_CHECKING:  # numpy: only catalogs with routers import it
    from gateway.policies.router_spec import Router


def catalog_routers(declared: dict[str, Path], source: str) -> dict[str, Router]:
    """Each router, loaded from its file (a relative path from the catalog's directory); a bad
    file stops the start rather than a request."""
    if not declared:
        return {}
    from gateway.policies.router_spec import load_router
    from gateway.policies.triggers import TriggerError

    base = Path(source).parent
    routers: dict[str, Router] = {}
    for name, path in declared.items():
        full = path if path.is_absolute() else base / path
        if full.suffix != ".json":
            raise CatalogError(source, f"routers.{name}", f"{full}: a router file is a .json file")
        try:
            routers[name] = load_router(full)
        except TriggerError as exc:
            raise CatalogError(source, f"routers.{name}", f"{full}: {exc}") from None
    return routers
