"""The catalog's `routers`: learned-trigger router files by name, checked at start-up.

A request or an alias names a router; only the catalog says which file that is, so no request
can make the server read a path of its choosing.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.config import CatalogError


def catalog_routers(declared: dict[str, Path], source: str) -> dict[str, Path]:
    """Each router's absolute path (relative ones from the catalog's directory), each file read
    once now so that a bad one stops the start rather than a request."""
    if not declared:
        return {}
    from gateway.policies.router_spec import load_router  # numpy: catalogs that use it
    from gateway.policies.triggers import TriggerError

    base = Path(source).parent
    routers: dict[str, Path] = {}
    for name, path in declared.items():
        full = path if path.is_absolute() else base / path
        try:
            load_router(str(full))
        except TriggerError as exc:
            raise CatalogError(source, f"routers.{name}", f"{full}: {exc}") from None
        routers[name] = full.resolve()
    return routers
