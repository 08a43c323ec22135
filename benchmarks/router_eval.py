"""Accuracy against upload for `collab`'s triggers, the learned router beside the training-free
ones, on BIG-bench tasks the router never saw, in few-shot completion and chat form.

    .venv/bin/python -m benchmarks.router_eval --tasks TASK [TASK ...] [--questions 60]
        [--forms completion chat] [--router NAME=ROUTER.json ...]
        [--configs [free] [learned]] [--merge OTHER.json ...] [--out benchmarks/results]
        [--name router_eval]

Every question is asked through the policy (`CollabPolicy`, greedy, at most 8 tokens, stopping at
a newline) in each configuration in turn: the small model alone (`never`), the large model alone
(`always`), `entropy`, `top1` and `margin` at a sweep of thresholds, and the router at a sweep of
calibrated upload targets. A question is asked after three solved examples of its task (as text,
or as chat turns); it is right when the answer's first line starts with a target (BIG-bench's
exact match, case and surrounding punctuation aside). The upload ratio is the share of the
answer's tokens the large model wrote.

It prints a table per form (accuracy with its 95% Wilson interval, upload, and the share of the
small-to-large gap closed with a 95% bootstrap interval over questions) and writes JSON + PNG.
`--configs` with no group runs the two anchors alone: a survey of where the large model is
ahead. `--merge` adds the configurations of runs over the same questions (say, the router's,
run once it is trained) to this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chat_forms import wilson
from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from gateway.core.events import Delta, Report
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.policies.collab import CollabPolicy
from gateway.policies.router_spec import load_router
from gateway.training.prompts import Prompt, correct, load_prompts

MAX_TOKENS = 8
ANCHORS: list[tuple[str, dict[str, Any]]] = [
    ("small only", {"trigger": "never"}),
    ("large only", {"trigger": "always"}),
]
TRAINING_FREE: list[tuple[str, dict[str, Any]]] = [
    *[(f"entropy > {t}", {"trigger": "entropy", "threshold": t}) for t in (3, 2, 1, 0.5)],
    *[(f"top1 < {t}", {"trigger": "top1", "threshold": t}) for t in (0.3, 0.6)],
    *[(f"margin < {t}", {"trigger": "margin", "threshold": t}) for t in (0.2, 0.5)],
]
UPLOADS = (0.1, 0.2, 0.3)
TRIGGERS = ("entropy", "top1", "margin")


def configs(
    groups: list[str], routers: list[str], uploads: tuple[float, ...] = UPLOADS
) -> list[tuple[str, dict[str, Any]]]:
    """The anchors always come first (the gap is measured against them)."""
    learned = [
        (f"{name} @ {u:.0%}", {"trigger": "learned", "router": name, "upload_target": u})
        for name in routers
        for u in uploads
    ]
    chosen = {"free": TRAINING_FREE, "learned": learned}
    return [*ANCHORS, *(c for group in groups for c in chosen.get(group, []))]


@dataclass
class Point:
    label: str
    form: str
    outcomes: list[int] = field(default_factory=list)  # 1: right, per question in order
    tasks: list[str] = field(default_factory=list)
    tokens: int = 0
    large_tokens: int = 0

    def add(self, task: str, right: bool, report: Report) -> None:
        self.outcomes.append(int(right))
        self.tasks.append(task)
        self.tokens += sum(report.tokens.values())
        self.large_tokens += report.tokens.get("large", 0)

    @property
    def accuracy(self) -> float:
        return sum(self.outcomes) / len(self.outcomes)

    @property
    def upload(self) -> float:
        return self.large_tokens / self.tokens if self.tokens else 0.0


def gap_closed(
    point: list[int], small: list[int], large: list[int], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Share of the small-to-large accuracy gap the point closes, with a 95% bootstrap interval
    over questions (each draw resamples the same questions for all three runs)."""

    def closed(idx: list[int]) -> float:
        s = sum(small[i] for i in idx)
        gap = sum(large[i] for i in idx) - s
        return (sum(point[i] for i in idx) - s) / gap if gap else float("nan")

    n = len(point)
    rng = random.Random(seed)
    values = sorted(
        v for v in (closed([rng.randrange(n) for _ in range(n)]) for _ in range(draws)) if v == v
    )
    if not values:
        return (float("nan"),) * 3
    return (
        closed(list(range(n))),
        values[int(0.025 * len(values))],
        values[int(0.975 * len(values))],
    )


def request(prompt: Prompt) -> ChatCompletionRequest | CompletionRequest:
    common = {"model": "collab", "max_tokens": MAX_TOKENS, "temperature": 0, "stop": ["\n"]}
    if prompt.messages is not None:
        return ChatCompletionRequest.model_validate({**common, "messages": prompt.messages})
    return CompletionRequest.model_validate({**common, "prompt": prompt.text})


async def ask(policy: CollabPolicy, params: Any, prompt: Prompt) -> tuple[str, Report]:
    req = request(prompt)
    if isinstance(req, ChatCompletionRequest):
        events = [e async for e in policy.chat(req, params)]
    else:
        events = [e async for e in policy.complete(req, params)]
    text = "".join(e.text for e in events if isinstance(e, Delta))
    return text, next(e for e in events if isinstance(e, Report))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # one thread each (two runs share a 2-core machine); the prefix cache on, as served: every
    # configuration asks the same prompt, and its prefill is paid once
    small = LlamaCppBackend("smollm2", LlamaCppConfig(model="smollm2-135m", threads=1))
    large = LlamaCppBackend("gemma3", LlamaCppConfig(model="gemma3-270m", threads=1))
    await small.start()
    await large.start()
    routers = {name: load_router(path) for name, path in named(args.router)}
    policy = CollabPolicy("collab", {"small": small, "large": large}, routers)
    sweep = configs(args.configs, list(routers), tuple(args.uploads))
    parsed = [policy.parse_params({**p, "draft": 0}) for _, p in sweep]
    points: dict[str, list[Point]] = {}
    began = time.perf_counter()
    try:
        for form in args.forms:
            points[form] = [Point(label, form) for label, _ in sweep]
            for task in args.tasks:
                asked = load_prompts(
                    f"bigbench:{task}", limit=args.questions, seed=args.seed, form=form
                )
                for prompt in asked:
                    for params, point in zip(parsed, points[form], strict=True):
                        text, report = await ask(policy, params, prompt)
                        point.add(task, correct(text, prompt.targets), report)
                print(f"{form} {task}: {len(asked)} asked, {progress(points[form], task)}, "
                      f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    finally:
        await small.aclose()
        await large.aclose()
    return summarise(args, points, time.perf_counter() - began)


def named(specs: list[str]) -> list[tuple[str, Path]]:
    """`NAME=PATH` pairs; a bare path is named after its file."""
    pairs = []
    for spec in specs:
        name, _, path = spec.rpartition("=")
        pairs.append((name or Path(path).stem, Path(path)))
    return pairs


def progress(points: list[Point], task: str) -> str:
    """Each configuration's right answers on the task just asked."""
    return ", ".join(
        f"{p.label} {sum(o for o, t in zip(p.outcomes, p.tasks, strict=True) if t == task)}"
        for p in points
    )


def summarise(
    args: argparse.Namespace, points: dict[str, list[Point]], secs: float
) -> dict[str, Any]:
    forms: dict[str, Any] = {}
    for form, runs in points.items():
        small, large = runs[0].outcomes, runs[1].outcomes
        rows = []
        for p in runs:
            low, high = wilson(sum(p.outcomes), len(p.outcomes))
            closed, c_low, c_high = gap_closed(p.outcomes, small, large)
            per_task = {
                t: sum(o for o, tt in zip(p.outcomes, p.tasks, strict=True) if tt == t)
                for t in args.tasks
            }
            rows.append(
                {
                    "label": p.label,
                    "right": sum(p.outcomes),
                    "asked": len(p.outcomes),
                    "accuracy": p.accuracy,
                    "ci95": [low, high],
                    "upload": p.upload,
                    "tokens": p.tokens,
                    "large_tokens": p.large_tokens,
                    "gap_closed": closed,
                    "gap_closed_ci95": [c_low, c_high],
                    "right_per_task": per_task,
                    "outcomes": p.outcomes,
                }
            )
        forms[form] = rows
    return {
        "tasks": args.tasks,
        "questions_per_task": args.questions,
        "routers": {name: str(path) for name, path in named(args.router)},
        "source": "BIG-bench (bigbench 1.0.0 on PyPI), three solved examples per question",
        "run_seconds": round(secs, 1),
        "forms": forms,
    }


def merge(result: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Another run's configurations beside these, over the same tasks and questions. Each row's
    gap is measured against its own run's anchors; llama.cpp's shared KV cache puts a pooled
    prompt elsewhere from run to run, and its 8-bit activations can then flip a near tie, so the
    anchors' answers that differ between the runs are counted."""
    same = ("tasks", "questions_per_task")
    if any(result[k] != other[k] for k in same):
        raise SystemExit("runs of other tasks or question counts cannot be merged")
    differ = result.setdefault("anchor_answers_differing", {})
    for form, rows in other["forms"].items():
        mine = result["forms"].get(form)
        if mine is None:  # a form this run did not ask
            result["forms"][form] = rows
            continue
        for a, b in zip(mine[: len(ANCHORS)], rows[: len(ANCHORS)], strict=True):
            flips = sum(x != y for x, y in zip(a["outcomes"], b["outcomes"], strict=True))
            differ.setdefault(f"{form}: {a['label']}", []).append(flips)  # one per merged run
        known = {r["label"] for r in mine}
        mine += [r for r in rows[len(ANCHORS) :] if r["label"] not in known]
    result["routers"] = {**result.get("routers", {}), **other.get("routers", {})}
    result["run_seconds"] = result["run_seconds"] + other["run_seconds"]
    return result


def table(result: dict[str, Any]) -> str:
    lines = []
    for form, rows in result["forms"].items():
        lines += [
            f"\n{form} form ({rows[0]['asked']} questions)",
            "| run | accuracy | 95% CI | upload | gap closed | 95% CI |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lo, hi = r["ci95"]
            c, c_lo, c_hi = r["gap_closed"], *r["gap_closed_ci95"]
            lines.append(
                f"| {r['label']} | {r['right']}/{r['asked']} ({r['accuracy']:.1%}) "
                f"| {lo:.1%}-{hi:.1%} | {r['upload']:.1%} "
                f"| {_pct(c)} | {_pct(c_lo)} to {_pct(c_hi)} |"
            )
    return "\n".join(lines)


def survey(result: dict[str, Any]) -> str:
    lines = ["| form | task | small only | large only |", "|---|---|---|---|"]
    for form, rows in result["forms"].items():
        n = rows[0]["asked"] // len(result["tasks"])
        for task in result["tasks"]:
            s, la = (rows[i]["right_per_task"][task] for i in (0, 1))
            lines.append(f"| {form} | {task} | {s}/{n} | {la}/{n} |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.0%}"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forms = list(result["forms"])
    fig, axes = plt.subplots(1, len(forms), figsize=(6 * len(forms), 4.5), squeeze=False)
    for ax, form in zip(axes[0], forms, strict=True):
        rows = result["forms"][form]
        families = {"entropy": "o", "top1": "^", "margin": "v"}
        families.update({name: "*" for name in result.get("routers", {})})
        for family, marker in families.items():
            mine = sorted(
                (r for r in rows if r["label"].startswith(family)), key=lambda r: r["upload"]
            )
            if not mine:
                continue
            xs = [100 * r["upload"] for r in mine]
            ys = [100 * r["accuracy"] for r in mine]
            errs = [[100 * (r["accuracy"] - r["ci95"][0]) for r in mine],
                    [100 * (r["ci95"][1] - r["accuracy"]) for r in mine]]  # fmt: skip
            label = family if family in TRIGGERS else f"learned: router '{family}'"
            ax.errorbar(xs, ys, yerr=errs, marker=marker, capsize=3, label=label,
                        markersize=6 if family in TRIGGERS else 10)  # fmt: skip
        for r, style in zip(rows[:2], ("k--", "k:"), strict=True):
            ax.axhline(100 * r["accuracy"], color="k", ls=style[1:], lw=1, label=r["label"])
        ax.axvline(30, color="grey", lw=0.8, alpha=0.5)
        ax.set_xlabel("upload: share of answer tokens written by Gemma-3-270M (%)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{form} form, {rows[0]['asked']} held-out questions")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("collab on BIG-bench tasks the router never saw (95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", required=True, help="BIG-bench task names")
    parser.add_argument("--questions", type=int, default=60, help="per task")
    parser.add_argument("--seed", type=int, default=1, help="which questions of each task")
    parser.add_argument(
        "--forms", nargs="+", choices=["completion", "chat"], default=["completion", "chat"]
    )
    parser.add_argument(
        "--router", nargs="*", default=[], help="NAME=PATH: a router file for `learned` rows"
    )
    parser.add_argument(
        "--configs",
        nargs="*",
        choices=["free", "learned"],
        default=["free", "learned"],
        help="besides the anchors: the training-free triggers, the router (needs --router)",
    )
    parser.add_argument(
        "--uploads", type=float, nargs="+", default=list(UPLOADS), help="the routers' targets"
    )
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="add these runs' rows")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="router_eval")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        result = json.loads((args.out / f"{args.name}.json").read_text())
    else:
        result = asyncio.run(run(args))
    for path in args.merge:
        result = merge(result, json.loads(path.read_text()))
    if not args.replot or args.merge:
        (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    anchors_only = all(len(rows) == len(ANCHORS) for rows in result["forms"].values())
    print(survey(result) if anchors_only else table(result))
    if not anchors_only:
        plot(result, args.out / f"{args.name}.png")
    print(f"run: {result['run_seconds']} s")


if __name__ == "__main__":
    main()
