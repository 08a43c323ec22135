"""A PNG of the comparison: TTFT, throughput against direct, and inter-token latency."""

from __future__ import annotations

import math
import statistics
from collections import Counter
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
    """One bar per load level: the median over the level's repeats (`--repeat`), the share of
    direct's requests/s taken within each repeat."""
    direct = {r.scenario: r.rps for r in reports if r.target == "direct"}
    by_load: dict[str, list[float]] = {}
    for report in reports:
        if report.target != target:
            continue
        value = field_of(report, dotted)
        if dotted == "rps":
            base = direct.get(report.scenario)
            value = 100 * value / base if base else math.nan
        by_load.setdefault(load_label(report), []).append(value)
    return [statistics.median(by_load[load]) if load in by_load else math.nan for load in loads]


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
    per_load = Counter(load_label(r) for r in reports if r.target == targets[0])
    repeats = max(per_load.values(), default=1)
    runs = f", median of {repeats} repeats" if repeats > 1 else ""
    fig.suptitle(f"Fake upstream: direct and through each gateway, same run{runs}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
