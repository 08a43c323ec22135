"""Quality against cost for the `collab` policy: SmolLM2-135M writes, Gemma-3-270M steps in.

    .venv/bin/pip install --no-deps -r benchmarks/requirements-collab.txt   # once
    .venv/bin/python -m benchmarks.collab_eval [--questions 50] [--out benchmarks/results]
        [--backends transformers llamacpp]

Questions: BIG-bench's `qa_wikidata` task (Google's BIG-bench, Apache-2.0, shipped in the
`bigbench` 1.0.0 package on PyPI): factual completions such as `The country of 11 de marzo de
2004 is` with their ground-truth answers. A fixed random sample is asked, after three solved
examples from the same task, as a plain-text completion; an answer is right when its first line
starts with a target (case and surrounding punctuation ignored), BIG-bench's exact-match rule.

It prints and writes (JSON + PNG under --out):
1. accuracy and upload ratio (large-model tokens / completion tokens) for the small model alone
   (`never`), the large model alone (`always`) and collab at a sweep of trigger thresholds;
2. orchestration overhead per token: wall time not spent awaiting a model (the policy's own
   `overhead_ms_per_token`), goal < 1 ms;
3. throughput against the bound from per-step costs measured in the same run: per question,
   small prefill + tokens x small step + (large prefill if it was asked) + large tokens x large
   step; collab should stay within 10% of it;
4. the large model behind an injected round trip (50 and 200 ms): wall time with and without
   drafting.

With several `--backends` the pair runs on each runtime, every question asked of each in turn,
and a last table gives each configuration's tokens/s on each runtime against the first's; the
files are then `collab_eval_<backends>.json` and `.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.backends.local import LocalBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.events import Delta, Report
from gateway.core.protocol import CompletionRequest
from gateway.policies.collab import CollabPolicy
from tests.policies.fakes import scripted

MAX_TOKENS = 8
SHOTS = 3
SWEEP: list[tuple[str, str, dict[str, Any]]] = [
    ("small only", "never", {"trigger": "never"}),
    ("large only", "always", {"trigger": "always"}),
    *[(f"entropy > {t}", "collab", {"trigger": "entropy", "threshold": t}) for t in (3, 2, 1, 0.5)],
    ("top1 < 0.3", "collab", {"trigger": "top1", "threshold": 0.3}),
]


@dataclass
class Question:
    prompt: str  # the solved examples, then the question
    targets: list[str]
    text: str = ""  # the question alone
    shots: tuple[tuple[str, str], ...] = ()  # the solved examples: (question, answer)


def load_questions(n: int, seed: int = 0) -> list[Question]:
    spec = importlib.util.find_spec("bigbench")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps -r benchmarks/requirements-collab.txt first")
    task = Path(spec.submodule_search_locations[0], "benchmark_tasks/qa_wikidata/task.json")
    examples = json.loads(task.read_text())["examples"]
    rng = random.Random(seed)
    picked = rng.sample(examples, n + SHOTS)
    solved = tuple((e["input"], targets(e)[0]) for e in picked[:SHOTS])
    shots = "".join(f"{q} {a}.\n" for q, a in solved)
    return [Question(shots + e["input"], targets(e), e["input"], solved) for e in picked[SHOTS:]]


def targets(example: dict[str, Any]) -> list[str]:
    target = example["target"]
    return [target] if isinstance(target, str) else list(target)


def normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".,;:!?\"'").lower())


def correct(answer: str, question: Question) -> bool:
    line = normal(answer.split("\n")[0])
    return any(line.startswith(normal(t)) and normal(t) for t in question.targets)


@dataclass
class Point:
    """One configuration's totals over the questions."""

    label: str
    kind: str
    right: int = 0
    asked: int = 0
    tokens: int = 0
    large_tokens: int = 0
    seconds: float = 0.0
    overhead_ms: float = 0.0  # summed over tokens
    bound_seconds: float = 0.0

    def add(self, right: bool, report: Report, seconds: float, bound_seconds: float) -> None:
        tokens = sum(report.tokens.values())
        self.right += right
        self.asked += 1
        self.tokens += tokens
        self.large_tokens += report.tokens.get("large", 0)
        self.seconds += seconds
        self.overhead_ms += report.extra["overhead_ms_per_token"] * tokens
        self.bound_seconds += bound_seconds

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accuracy": self.right / self.asked,
            "upload_ratio": self.large_tokens / self.tokens if self.tokens else 0.0,
            "overhead_ms_per_token": self.overhead_ms / self.tokens if self.tokens else 0.0,
        }


async def ask(policy: CollabPolicy, params: Any, question: Question) -> tuple[str, Report, float]:
    request = CompletionRequest.model_validate(
        {
            "model": "collab",
            "prompt": question.prompt,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stop": ["\n"],
        }
    )
    began = time.perf_counter()
    events = [e async for e in policy.complete(request, params)]
    seconds = time.perf_counter() - began
    text = "".join(e.text for e in events if isinstance(e, Delta))
    report = next(e for e in events if isinstance(e, Report))
    return text, report, seconds


@dataclass
class StepCosts:
    """Seconds for one model's prefill of the prompt and per decoded token."""

    prefill: float
    step: float


async def step_costs(backend: LocalBackend, question: Question, small: bool) -> StepCosts:
    """What collab asks of each model: the small one's distribution before every token (one
    forward pass and a top-k), the large one's next token (a forward pass and an argmax)."""
    steps = []
    async with await backend.open_session(backend.tokenizer.encode(question.prompt)) as s:
        began = time.perf_counter()
        await (s.next_distribution(8) if small else s.step())
        prefill = time.perf_counter() - began
        for _ in range(4):
            if small:
                await s.step()  # picks from the distribution just computed: no forward pass
            began = time.perf_counter()
            await (s.next_distribution(8) if small else s.step())
            steps.append(time.perf_counter() - began)
    return StepCosts(prefill, sum(steps) / len(steps))


def bound(report: Report, small: StepCosts, large: StepCosts) -> float:
    """The time this answer needs at the measured per-step costs, nothing else: the small model
    decides before every token (its prefill gives the first decision, a forward pass each
    later one); the large model's first token comes with its prefill."""
    asked = report.tokens.get("large", 0)
    seconds = small.prefill + (sum(report.tokens.values()) - 1) * small.step
    return seconds + (large.prefill + (asked - 1) * large.step if asked else 0.0)


@dataclass
class Pair:
    """The two models on one runtime, and what the sweep measured on them."""

    kind: str
    small: LocalBackend
    large: LocalBackend
    points: list[Point] = field(default_factory=list)
    costs: list[StepCosts] = field(default_factory=list)


async def sweep(pairs: list[Pair], questions: list[Question]) -> None:
    """Question by question, every runtime and configuration back to back: a machine whose
    load drifts during the run weighs on all of them alike. Drafting is off: sequential, like
    the bound."""
    policies = {}
    for pair in pairs:
        policy = CollabPolicy("collab", {"small": pair.small, "large": pair.large})
        pair.points = [Point(label, kind) for label, kind, _ in SWEEP]
        policies[pair.kind] = (policy, [policy.parse_params({**p, "draft": 0}) for *_, p in SWEEP])
    for question in questions:
        for pair in pairs:
            small_costs = await step_costs(pair.small, question, small=True)
            large_costs = await step_costs(pair.large, question, small=False)
            pair.costs += [small_costs, large_costs]
            policy, configs = policies[pair.kind]
            for params, point in zip(configs, pair.points, strict=True):
                text, report, took = await ask(policy, params, question)
                point.add(
                    correct(text, question), report, took, bound(report, small_costs, large_costs)
                )


async def drafting(
    small: LocalBackend,
    large: LocalBackend,
    questions: list[Question],
    params: dict[str, Any],
    round_trip: float,
) -> dict[str, Any]:
    """The large model behind a round trip per call: drafting off, then on."""
    remote = scripted(large, delay=round_trip)
    policy = CollabPolicy("collab", {"small": small, "large": remote})
    result: dict[str, Any] = {"round_trip_ms": round(1000 * round_trip), "params": params}
    answers: dict[int, list[str]] = {}
    for draft in (0, 4):
        parsed = policy.parse_params({**params, "draft": draft})
        seconds, kept, drafted, texts = 0.0, 0, 0, []
        for question in questions:
            text, report, took = await ask(policy, parsed, question)
            seconds += took
            kept += report.extra["draft_kept"]
            drafted += report.extra["drafted"]
            texts.append(text)
        answers[draft] = texts
        result[f"draft_{draft}"] = {"seconds": seconds, "drafted": drafted, "kept": kept}
    result["same_answers"] = answers[0] == answers[4]
    return result


def start(kind: str, name: str, model: str) -> LocalBackend:
    # one thread each: the two models can then run side by side on a 2-core machine. No prefix
    # cache: every configuration asks the same questions, and a cached prompt would make
    # whichever runs second look faster than its prefill-inclusive bound
    if kind == "llamacpp":
        from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig

        return LlamaCppBackend(name, LlamaCppConfig(model=model, threads=1, prefix_cache=0))
    settings: dict[str, Any] = {"model": model, "threads": 1}
    if "prefix_cache" in TransformersConfig.model_fields:
        settings["prefix_cache"] = 0
    return TransformersBackend(name, TransformersConfig(**settings))


async def run(n: int, drafted: int, kinds: list[str]) -> dict[str, Any]:
    pairs = [
        Pair(kind, start(kind, "smollm2", "smollm2-135m"), start(kind, "gemma3", "gemma3-270m"))
        for kind in kinds
    ]
    for pair in pairs:
        await pair.small.start()
        await pair.large.start()
    questions = load_questions(n)
    await sweep(pairs, questions[:1])  # warm-up: first calls allocate and compile
    await sweep(pairs, questions)
    params = {"trigger": "entropy", "threshold": 1}
    runs = []
    for pair in pairs:
        draft = [
            await drafting(pair.small, pair.large, questions[:drafted], params, round_trip)
            for round_trip in ((0.05, 0.2) if drafted else ())
        ]
        await pair.small.aclose()
        await pair.large.aclose()
        mean = {
            name: {
                "prefill": sum(c.prefill for c in pair.costs[i::2]) / n,
                "step": sum(c.step for c in pair.costs[i::2]) / n,
            }
            for i, name in enumerate(("small", "large"))
        }
        runs.append(
            {
                "backend": pair.kind,
                "step_costs": mean,
                "points": [p.summary() for p in pair.points],
                "drafting": draft,
            }
        )
    # the first runtime's results where a single-runtime run has them
    return {
        "questions": n,
        "source": "BIG-bench qa_wikidata (bigbench 1.0.0 on PyPI)",
        **{key: runs[0][key] for key in ("backend", "step_costs", "points", "drafting")},
        "runs": runs,
    }


def table(runs: list[dict[str, Any]]) -> str:
    """One row per runtime and configuration; speeds against the same runtime's small model."""
    rows = [
        "| backend | run | accuracy | upload ratio | tok/s | vs small-only | bound vs small-only "
        "| overhead ms/token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        small = next(p for p in run["points"] if p["kind"] == "never")
        base = small["tokens"] / small["seconds"]
        for p in run["points"]:
            speed = p["tokens"] / p["seconds"]
            bound_speed = p["tokens"] / p["bound_seconds"]
            rows.append(
                f"| {run.get('backend', 'transformers')} | {p['label']} | {p['accuracy']:.0%} "
                f"| {p['upload_ratio']:.1%} | {speed:.1f} | {speed / base:.2f} "
                f"| {bound_speed / base:.2f} | {p['overhead_ms_per_token']:.3f} |"
            )
    return "\n".join(rows)


def speeds(runs: list[dict[str, Any]]) -> str:
    """Tokens/s of each configuration on each runtime, and the ratio to the first runtime."""
    kinds = [run["backend"] for run in runs]
    rows = [
        "| run | "
        + " | ".join(f"{k} tok/s" for k in kinds)
        + " | "
        + " | ".join(f"{k} / {kinds[0]}" for k in kinds[1:])
        + " |",
        "|---|" + "---|" * (2 * len(kinds) - 1),
    ]
    for i, point in enumerate(runs[0]["points"]):
        tps = [run["points"][i]["tokens"] / run["points"][i]["seconds"] for run in runs]
        cells = [f"{t:.1f}" for t in tps] + [f"{t / tps[0]:.2f}" for t in tps[1:]]
        rows.append(f"| {point['label']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"never": ("s", "small only"), "always": ("D", "large only")}
    for i, p in enumerate(result["points"]):
        marker, label = styles.get(p["kind"], ("o", None))
        ax.scatter(100 * p["upload_ratio"], 100 * p["accuracy"], marker=marker, s=50)
        ax.annotate(label or p["label"], (100 * p["upload_ratio"], 100 * p["accuracy"]),
                    textcoords="offset points", xytext=(5, 4 if i % 2 else -11),
                    fontsize=8)  # fmt: skip
    ax.set_xlabel("upload ratio: tokens written by Gemma-3-270M (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"collab on BIG-bench qa_wikidata, {result['questions']} questions")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--drafted", type=int, default=16, help="questions for the drafting run")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["transformers", "llamacpp"],
        default=["transformers"],
        help="runtimes of the pair, each answering every question in turn",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # a run on other runtimes than the default writes files of its own
    default = args.backends == ["transformers"]
    stem = "collab_eval" if default else "_".join(["collab_eval", *args.backends])
    if args.replot:
        plot(json.loads((args.out / f"{stem}.json").read_text()), args.out / f"{stem}.png")
        return
    began = time.perf_counter()
    result = asyncio.run(run(args.questions, args.drafted, args.backends))
    result["run_seconds"] = round(time.perf_counter() - began, 1)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / f"{stem}.png")
    print(table(result["runs"]))
    if len(result["runs"]) > 1:
        print(speeds(result["runs"]))
    for run_ in result["runs"]:
        print(f"step costs ({run_['backend']}):", json.dumps(run_["step_costs"]))
        for trial in run_["drafting"]:
            print(f"drafting behind {trial['round_trip_ms']} ms:", json.dumps(trial))
    print(f"run: {result['run_seconds']} s")


if __name__ == "__main__":
    main()
