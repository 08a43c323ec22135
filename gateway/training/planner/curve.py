"""The run's curve from the trainer's log, as a PNG: per step, the mean reward, the share of
right answers and the mean plan length."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [(int(r["step"]), float(r[key])) for r in log_history if key in r and "step" in r]
    return [s for s, _ in rows], [v for _, v in rows]


def plot(log_history: list[dict[str, Any]], path: Path, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: the file is the output
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for key, label in (("reward", "reward"), ("grade", "answer right")):
        top.plot(*series(log_history, key), marker=".", label=label)
    top.set_ylabel("mean per step")
    top.legend()
    bottom.plot(*series(log_history, "plan_length"), marker=".", color="tab:green")
    bottom.set_ylabel(f"plan length ({unit})")
    bottom.set_xlabel("GRPO step")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
