"""Backend registry. Heavy kinds are imported only when a catalog names them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gateway.backends.base import Backend, BackendConfig
from gateway.backends.local import LocalBackendConfig
from gateway.backends.local_kind import LOCAL, local_kind
from gateway.core.config import BackendSpec, CatalogError, error_key
from gateway.core.registry import Registry, UnknownName

backends: Registry[Backend] = Registry(
    "backend kind",
    lazy={
        "openai": "gateway.backends.openai_http",
        "echo": "gateway.backends.echo",
        "transformers": "gateway.backends.transformers",
        "mlx": "gateway.backends.mlx",
        "llamacpp": "gateway.backends.llamacpp",
        "vllm": "gateway.backends.vllm",
    },
)
register = backends.register
log = logging.getLogger(__name__)


def build_backend(
    name: str, spec: BackendSpec, source: str, pick_local: Callable[[], str] = local_kind
) -> Backend:
    """Validate one catalog entry against its kind's settings and construct it. `kind: local`
    takes only the settings every in-process kind shares, then becomes `pick_local()`'s kind."""
    key = f"backends.{name}"
    settings = spec.settings()
    kind = spec.kind
    if kind == LOCAL:
        validate(LocalBackendConfig, settings, source, key)
        kind = pick_local()
        log.info("backend '%s': kind local runs on %s here", name, kind)
    try:
        cls = backends.get(kind)
    except UnknownName:
        known = ", ".join(sorted([*backends.names(), LOCAL]))
        reason = f"unknown backend kind '{kind}'; known: {known}"
        raise CatalogError(source, f"{key}.kind", reason) from None
    return cls(name, validate(cls.Config, settings, source, key))


def validate(config: type[BackendConfig], settings: dict[str, Any], source: str, key: str) -> Any:
    try:
        return config.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(source, f"{key}.{error_key(first['loc'])}", first["msg"]) from None


__all__ = ["Backend", "backends", "build_backend", "register"]
