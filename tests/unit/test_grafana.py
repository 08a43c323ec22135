"""The dashboard plots only metrics Tandem exports, so a renamed metric breaks this, not a graph."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.observability.metrics import Metrics

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "tandem.json"
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names() -> set[str]:
    """The series names Prometheus will see, labelled or not yet."""
    return {
        metric.name + suffix
        for metric in Metrics().registry.collect()
        for suffix in SERIES[metric.type]
    }


def test_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\btandem_[a-z_]+", expr)}
    exported = exported_names()
    missing = {name for name in used if name not in exported}
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"
    assert len(used) >= 8


def test_the_dashboard_covers_what_operators_watch() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in (
        "first token",
        "inter-token",
        "tokens per second",
        "upload ratio",
        "cache hit",
        "errors",
    ):
        assert topic in titles
