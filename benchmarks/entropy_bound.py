"""How far the entropy a top-k-only backend reports (vLLM, any HTTP server) is from the exact
entropy an in-process backend reports, on real text.

    .venv/bin/python -m benchmarks.entropy_bound [--positions 1500] [--text-task qa_wikidata]

SmolLM2-135M's exact next-token entropy at each position of BIG-bench text, beside the lower
bound from its top-k log-probs, k = 5, 8 and 20, both ways: the unseen rest counted as one token
(the old bound) and as tokens no likelier than the least seen one (`entropy_lower_bound`). For
each: the mean and 90th-percentile gap in nats, and how often an entropy threshold decides as
the exact entropy does.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence

THRESHOLDS = (0.5, 1.0, 2.0, 3.0)


def rest_as_one(logprobs: Sequence[float]) -> float:
    probs = [math.exp(lp) for lp in logprobs]
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in [*probs, rest] if p > 0)


def first(target: str | list[str]) -> str:
    return target if isinstance(target, str) else target[0]


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gateway.backends.openai_sessions import entropy_lower_bound
    from gateway.models import prepare
    from gateway.training.prompts import bigbench_tasks

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=1500)
    parser.add_argument("--text-task", default="qa_wikidata")
    args = parser.parse_args()

    folder = prepare("smollm2-135m").location
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    task = json.loads((bigbench_tasks() / args.text_task / "task.json").read_text())
    text = "\n".join(f"{e['input']} {first(e['target'])}" for e in task["examples"][:200])
    ids = tokenizer.encode(text)[: args.positions]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    exact = (-(logprobs.exp() * logprobs).sum(-1)).tolist()
    print(f"{len(ids)} positions, exact entropy mean {statistics.mean(exact):.2f} nats")
    agrees = " | ".join(f"agrees at {t}" for t in THRESHOLDS)
    print(f"| k | bound | mean gap | p90 gap | {agrees} |")
    print("|---|---|---|---|" + "---|" * len(THRESHOLDS))
    bounds: dict[str, Callable[[Sequence[float]], float]] = {
        "rest as one token": rest_as_one,
        "entropy_lower_bound": entropy_lower_bound,
    }
    for k in (5, 8, 20):
        tops = torch.topk(logprobs, k, -1).values.tolist()
        for name, bound in bounds.items():
            estimates = [bound(top) for top in tops]
            gaps = sorted(e - b for e, b in zip(exact, estimates, strict=True))
            agree = [
                statistics.mean((e > t) == (b > t) for e, b in zip(exact, estimates, strict=True))
                for t in THRESHOLDS
            ]
            cells = [f"{100 * a:.1f}%" for a in agree]
            p90 = gaps[int(0.9 * len(gaps))]
            head = f"| {k} | {name} | {statistics.mean(gaps):.2f} | {p90:.2f} | "
            print(head + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
