"""Name -> class registries, one per layer (backends, policies, later triggers).

A class registers itself with `@registry.register("name")`. Classes whose module imports a
heavy dependency (torch, mlx, vllm) are listed by module path in `lazy` and imported only when
their name is first asked for, so a gateway that never builds them never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(LookupError):
    pass


class Registry(Generic[T]):
    def __init__(self, layer: str, lazy: dict[str, str] | None = None) -> None:
        self.layer = layer
        self._classes: dict[str, type[T]] = {}
        self._lazy = dict(lazy or {})

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.layer} '{name}' is registered twice")
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(set(self._classes) | set(self._lazy))

    def get(self, name: str) -> type[T]:
        if name not in self._classes and name in self._lazy:
            importlib.import_module(self._lazy[name])
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UnknownName(f"unknown {self.layer} '{name}'; known: {known}") from None
