"""Rows as the router's feature vectors, built by the same code that scores at serving time."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.backends.sessions import Distribution
from gateway.policies.router_spec import Matrix, Router

LABELS = ("diverge", "critical")


def distribution(row: dict[str, Any]) -> Distribution:
    logprobs = [float(x) for x in row["top_logprobs"]]
    hidden = row.get("hidden")
    position = int(row["position"])
    return Distribution([0] * len(logprobs), logprobs, float(row["entropy"]), hidden, position)


def matrix(router: Router, rows: list[dict[str, Any]]) -> Matrix:
    """Raw (unnormalised) feature vectors: `Router.features` with normalisation left out."""
    mean, std = router.mean, router.std
    router.mean = router.std = None
    try:
        return np.stack([router.features(distribution(r)) for r in rows])
    finally:
        router.mean, router.std = mean, std


def labels(rows: list[dict[str, Any]], label: str) -> Matrix:
    if label not in LABELS:
        raise ValueError(f"unknown label '{label}'; known: {list(LABELS)}")
    values = [r.get(label) for r in rows]
    if any(v is None for v in values):
        raise ValueError(f"rows without a '{label}' label (it needs prompts with targets)")
    return np.asarray(values, dtype=np.float64)


def scores(router: Router, rows: list[dict[str, Any]]) -> Matrix:
    return np.asarray([router.score(distribution(r)) for r in rows])
