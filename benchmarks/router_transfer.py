"""Does a learned router see where the small model goes wrong on tasks it was not trained on?

    tandem router collect --alias tandem-collab --prompts bigbench:TASK --limit 200 \\
        --max-tokens 8 --out rows/TASK.jsonl                       # for each of 3+ tasks
    .venv/bin/python -m benchmarks.router_transfer rows/*.jsonl [--inputs entropy,top_logprobs]

Leave one task out: a router is trained on the other tasks' rows and scores the held-out task's,
beside the training-free signals read from the same rows (entropy, 1 - p(top token)). Each is
printed as an AUC per label: the chance that a row with the label scores above one without it.
A router that only matches the training-free signals buys nothing over them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from gateway.training.dataset import read
from gateway.training.features import labels, scores
from gateway.training.train import Recipe, auc, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=Path, nargs="+", help="one rows file per task")
    parser.add_argument("--inputs", default="entropy,top_logprobs")
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    inputs = tuple(name for name in args.inputs.split(",") if name)
    tasks = {path.stem: read(path) for path in args.rows}
    print(f"{'held-out task':36} {'label':8} {'rows':>9} {'learned':>8} {'entropy':>8} {'top1':>8}")
    for name, (_, held) in tasks.items():
        others = [t for t in tasks if t != name]
        header = tasks[others[0]][0]
        records = [r for t in others for r in tasks[t][1]]
        rows = [row for record in held for row in record["rows"]]
        for label in ("diverge", "critical"):
            print(f"{name[:36]:36} {label:8} " + row_of(header, records, rows, label, inputs, args))


def row_of(
    header: Any, records: list[Any], rows: list[Any], label: str, inputs: tuple[str, ...], args: Any
) -> str:
    y = labels(rows, label)
    router = train(header, records, Recipe(inputs=inputs, label=label, epochs=args.epochs)).router
    entropy = np.array([r["entropy"] for r in rows])
    top1 = np.array([-np.exp(r["top_logprobs"][0]) for r in rows])
    cells = [auc(scores(router, rows), y), auc(entropy, y), auc(top1, y)]
    return f"{int(y.sum()):>4}/{len(rows):<4} " + " ".join(f"{c:8.3f}" for c in cells)


if __name__ == "__main__":
    main()
