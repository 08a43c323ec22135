"""A PNG of the comparison: TTFT, throughput against direct, and inter-token latency."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from loadtests.report import Report
from loadtests.summary import load_label

PANELS = [
    ("TTFT p50 (ms, log scale)", "ttft_ms.p50", True),
    ("TTFT p99 (ms, log scale)", "ttft_ms.p99", True),
    ("requests/s, % of direct", "rps", False),
    ("inter-token latency p99 (ms)", "itl_ms.p99", False),
]


def field_of(report: Report, dotted: str) -> float:
    value: object = report
    for part in dotted.split("."):
        value = getattr(value, part)
    return float(value) if isinstance(value, int | float) else math.nan


def panel_values(reports: list[Report], target: str, dotted: str, loads: list[str]) -> list[float]:
    rows = {load_label(r): r for r in reports if r.target == target}
    direct = {load_label(r): r.rps for r in reports if r.target == "direct"}
    values = []
    for load in loads:
        value = field_of(rows[load], dotted) if load in rows else math.nan
        if dotted == "rps":
            value = 100 * value / direct[load] if direct.get(load) else math.nan
        values.append(value)
    return values


def plot(path: Path, reports: list[Report]) -> None:
    loads = list(dict.fromkeys(load_label(r) for r in reports))
    targets = list(dict.fromkeys(r.target for r in reports))
    width = 0.8 / max(len(targets), 1)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (title, dotted, log) in zip(axes.flat, PANELS, strict=True):
        for i, target in enumerate(targets):
            positions = [k + i * width for k in range(len(loads))]
            ax.bar(positions, panel_values(reports, target, dotted, loads), width, label=target)
        ax.set_xticks([k + width * (len(targets) - 1) / 2 for k in range(len(loads))], loads)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle("Fake upstream: direct and through each gateway, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
