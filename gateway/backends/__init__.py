"""Backend registry. Heavy kinds are imported only when a catalog names them."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.backends.base import Backend
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


def build_backend(name: str, spec: BackendSpec, source: str) -> Backend:
    """Validate one catalog entry against its kind's settings and construct it."""
    key = f"backends.{name}"
    try:
        cls = backends.get(spec.kind)
    except UnknownName as exc:
        raise CatalogError(source, f"{key}.kind", str(exc)) from None
    try:
        config: Any = cls.Config.model_validate(spec.settings())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(source, f"{key}.{error_key(first['loc'])}", first["msg"]) from None
    return cls(name, config)


__all__ = ["Backend", "backends", "build_backend", "register"]
