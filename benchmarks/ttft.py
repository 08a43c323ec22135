"""Time to first token added by the gateway, A/B between Tandem commands, against the direct
path measured in the same round.

A duration-bound load test compares the gateway's TTFT with the direct path's from another
minute of a shared machine; here each round measures the fake upstream directly, then each
gateway command in turn in front of the same upstream process, with the same fixed number of
requests, and reports each command's added TTFT (its median minus the direct median of that
round) per round and as the median over rounds.

    python -m benchmarks.ttft [--requests 300] [--concurrency 1] [--rounds 3]
        [--ttft 0] [--chunks 8] [--tandem '.venv/bin/tandem' ...]

`--concurrency 50 --ttft 0.02 --chunks 64 --requests 1500` is the load test's 50-stream level.
The upstream and this client share core 0, each gateway has core 1 (taskset, when present).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from benchmarks.relay_cpu import gateway_commands, stream_all, with_gateways
from loadtests.services import ALIAS, UPSTREAM_MODEL, Service, running, start_tandem
from loadtests.services import start_upstream as start_fake

WARMUP = 30


def measure(service: Service, model: str, args: argparse.Namespace) -> float:
    """The median TTFT in ms through `service`, after a warm-up."""
    url, chunks = service.base_url, args.chunks
    asyncio.run(stream_all(url, WARMUP, min(args.concurrency, 10), model, chunks))
    outcomes = asyncio.run(stream_all(url, args.requests, args.concurrency, model, chunks))
    return statistics.median(o.ttft * 1000 for o in outcomes if o.ttft is not None)


def one_round(commands: list[list[str]], args: argparse.Namespace, logs: Path) -> list[float]:
    """Direct's median TTFT, then each command's added TTFT, for one round."""
    upstream = start_fake(logs, args.client_cpus, args.ttft, args.itl, args.chunks)
    with running([upstream]):
        direct = measure(upstream, UPSTREAM_MODEL, args)
        added = []
        for command in commands:
            tandem = start_tandem(logs, args.gateway_cpus, upstream, command)
            with running([tandem]):
                added.append(measure(tandem, ALIAS, args) - direct)
    return [direct, *added]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttft", type=float, default=0.0, help="the upstream's, seconds")
    parser.add_argument("--itl", type=float, default=0.01, help="the upstream's, seconds")
    parser.add_argument("--chunks", type=int, default=8)
    return with_gateways(parser).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    commands = gateway_commands(args)
    added: dict[str, list[float]] = {t: [] for t in args.tandem}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            direct, *costs = one_round(commands, args, Path(tmp))
            line = ", ".join(f"{t} {c:+.2f} ms" for t, c in zip(args.tandem, costs, strict=True))
            print(f"round {round_ + 1}: direct TTFT p50 {direct:.2f} ms; added: {line}", flush=True)
            for name, cost in zip(args.tandem, costs, strict=True):
                added[name].append(cost)
    print(
        f"\n{args.requests} requests at concurrency {args.concurrency}, upstream TTFT "
        f"{args.ttft * 1000:g} ms, {args.chunks} chunks {args.itl * 1000:g} ms apart"
    )
    for name, costs in added.items():
        spread = f"{min(costs):+.2f}..{max(costs):+.2f}"
        print(
            f"{name}: added TTFT p50, median of rounds {statistics.median(costs):+.2f} ms "
            f"(rounds {spread})"
        )


if __name__ == "__main__":
    main()
