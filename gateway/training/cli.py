"""`tandem router collect|train|calibrate`: learn where the small model goes wrong.

    tandem router collect --alias tandem-collab --prompts bigbench:qa_wikidata --limit 400 \\
        --out rows.jsonl
    tandem router train rows.jsonl --out router.json --target-upload 0.2
    tandem router calibrate router.json heldout-rows.jsonl --target-upload 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.config import CatalogError

if TYPE_CHECKING:
    from gateway.training.dataset import Header

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="step", required=True)
    collect = steps.add_parser("collect", help="record the small model's positions and labels")
    collect.add_argument("--config", type=Path, help="catalog YAML (default: built-in catalog)")
    collect.add_argument("--alias", default="tandem-collab", help="a collab alias of the catalog")
    collect.add_argument(
        "--prompts", required=True, help="a JSONL file, or bigbench:TASK (pip install bigbench)"
    )
    collect.add_argument("--form", choices=["completion", "chat"], default="completion")
    collect.add_argument("--limit", type=int, help="at most this many prompts")
    collect.add_argument("--seed", type=int, default=0, help="order of a BIG-bench task")
    collect.add_argument("--max-tokens", type=int, default=16)
    collect.add_argument("--top-k", type=int, default=8)
    collect.add_argument("--concurrency", type=int, default=1, help="prompts at a time")
    collect.add_argument("--out", type=Path, required=True, help="rows file (resumed if it exists)")
    train = steps.add_parser("train", help="train a router on a rows file")
    train.add_argument("rows", type=Path, nargs="+")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--inputs", default="entropy,top_logprobs,hidden")
    train.add_argument("--label", choices=["diverge", "critical"], default="diverge")
    train.add_argument("--hidden-units", type=int, default=32)
    train.add_argument("--epochs", type=int, default=300)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--target-upload", type=float, help="set the threshold to this share")
    calibrate = steps.add_parser("calibrate", help="set a router's threshold on held-out rows")
    calibrate.add_argument("router", type=Path)
    calibrate.add_argument("rows", type=Path, nargs="+")
    calibrate.add_argument("--target-upload", type=float, required=True)
    calibrate.add_argument("--out", type=Path, help="default: overwrite the router")


def main(args: argparse.Namespace) -> int:
    from gateway.policies.router_spec import RouterError
    from gateway.training.dataset import DatasetError
    from gateway.training.prompts import PromptSetError

    step = {"collect": run_collect, "train": run_train, "calibrate": run_calibrate}[args.step]
    try:
        return step(args)
    except (CatalogError, DatasetError, PromptSetError, RouterError, ValueError) as exc:
        print(f"tandem router {args.step}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_collect(args: argparse.Namespace) -> int:
    from gateway.training.collect import Setup
    from gateway.training.pairs import catalog_pair
    from gateway.training.prompts import load_prompts
    from gateway.training.run import collect_into

    prompts = load_prompts(args.prompts, limit=args.limit, seed=args.seed, form=args.form)
    setup = Setup(max_tokens=args.max_tokens, top_k=args.top_k)

    async def go() -> None:
        async with catalog_pair(args.config, args.alias) as pair:
            summary = await collect_into(
                pair, prompts, setup, args.out, args.prompts, args.concurrency
            )
        print(
            f"{summary.prompts} prompts collected ({summary.skipped} already in {args.out}): "
            f"{summary.rows} rows, {summary.diverging} diverging"
        )

    asyncio.run(go())
    return 0


def read_all(paths: list[Path]) -> tuple[Header, list[dict[str, Any]]]:
    """Several rows files of one pair and setup, as one (its source names each file's)."""
    from dataclasses import replace

    from gateway.training.dataset import DatasetError, read

    header, records = read(paths[0])
    sources = [header.source]
    for path in paths[1:]:
        other, more = read(path)
        if not other.same_setup(header):
            raise DatasetError(f"{path} was collected for another pair or setup than {paths[0]}")
        records += more
        if other.source not in sources:
            sources.append(other.source)
    return replace(header, source=", ".join(sources)), records


def run_train(args: argparse.Namespace) -> int:
    from gateway.training.train import Recipe, train

    header, records = read_all(args.rows)
    recipe = Recipe(
        inputs=tuple(n.strip() for n in args.inputs.split(",") if n.strip()),
        label=args.label,
        hidden_units=args.hidden_units,
        epochs=args.epochs,
        seed=args.seed,
        target_upload=args.target_upload,
    )
    outcome = train(header, records, recipe)
    outcome.router.save(args.out)
    upload = "" if outcome.heldout_upload is None else f", upload {outcome.heldout_upload:.3f}"
    print(
        f"router written to {args.out}: {outcome.train_rows} training rows "
        f"({outcome.positive_share:.1%} positive), held-out AUC {outcome.heldout_auc:.3f} "
        f"on {outcome.heldout_rows} rows, threshold {outcome.router.threshold:.4f}{upload}"
    )
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from gateway.policies.router_spec import load_router
    from gateway.training.calibrate import calibrate
    from gateway.training.features import scores

    router = load_router(args.router)
    header, records = read_all(args.rows)
    if router.pair and header.pair != router.pair:
        raise ValueError("the rows were collected for another pair than the router's")
    rows = [row for record in records for row in record["rows"]]
    upload = calibrate(router, scores(router, rows), args.target_upload)
    out = args.out or args.router
    router.save(out)
    print(f"{out}: threshold {router.threshold:.4f} sends {upload:.3f} of {len(rows)} rows up")
    return 0
