"""Gateway CPU per relayed chunk for a fixed amount of work, A/B between Tandem commands.

A duration-bound load test on a shared 2-core machine measures the neighbours as much as the
gateway; the CPU time one gateway process spends on a fixed number of streamed requests does
not depend on how long they took. This sends the same requests (the fake upstream's answers, 64
chunks unless `--chunks` says otherwise) through each gateway command in turn, several rounds,
and prints the gateway's CPU time per relayed chunk (its process's user + system time over the
chunks received), per round and as the median, and each command's ratio to the first. With
`--chunks 4` the per-request work dominates.

    python -m benchmarks.relay_cpu [--requests 1500] [--concurrency 50] [--rounds 3]
        [--chunks 64] [--tandem '.venv/bin/tandem' ...]

The upstream and this client share core 0, each gateway has core 1 (taskset, when present).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import tempfile
from pathlib import Path

import aiohttp

from loadtests.client import Counters, Outcome, chat_body, stream_once
from loadtests.procstat import usage
from loadtests.services import ALIAS, REPO, running, start_tandem, start_upstream


async def stream_all(
    url: str,
    requests: int,
    concurrency: int,
    model: str = ALIAS,
    expected_chunks: int | None = None,
) -> list[Outcome]:
    """Send `requests` streamed chats, `concurrency` at a time; a failed one stops the run (CPU
    per chunk or TTFT of failed streams means nothing)."""
    left = iter(range(requests))
    counters = Counters()
    body = chat_body(model)
    outcomes: list[Outcome] = []
    limit = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=limit) as session:

        async def worker() -> None:
            for _ in left:
                outcome = await stream_once(
                    session, f"{url}/chat/completions", body, counters, expected_chunks
                )
                if outcome.error is not None:
                    raise RuntimeError(f"a streamed request failed: {outcome.error}")
                outcomes.append(outcome)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def measure(command: list[str], args: argparse.Namespace, logs: Path) -> float:
    """Microseconds of gateway CPU per relayed text chunk for one round."""
    upstream = start_upstream(logs, args.client_cpus, 0.02, 0.01, args.chunks)
    with running([upstream]):
        tandem = start_tandem(logs, args.gateway_cpus, upstream, command)
        with running([tandem]):
            url = tandem.base_url
            asyncio.run(stream_all(url, 50, 10))  # warm-up: connections, caches, code paths
            before = usage(tandem.pid).cpu_s
            outcomes = asyncio.run(stream_all(url, args.requests, args.concurrency))
            chunks = sum(outcome.chunks for outcome in outcomes)
            spent = usage(tandem.pid).cpu_s - before
    return spent / chunks * 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--chunks", type=int, default=64, help="per answer; a few make per-request work count"
    )
    return with_gateways(parser).parse_args(argv)


def with_gateways(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of an A/B between gateway commands, and where each process runs."""
    parser.add_argument(
        "--tandem",
        nargs="*",
        default=[".venv/bin/tandem"],
        help="gateway commands to compare (each a shell-quoted command line)",
    )
    parser.add_argument("--client-cpus", default="0", help="cores for this client + upstream")
    parser.add_argument("--gateway-cpus", default="1", help="cores for the gateway")
    return parser


def gateway_commands(args: argparse.Namespace) -> list[list[str]]:
    """The `--tandem` commands as argument lists, this process pinned to `--client-cpus`."""
    if args.client_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    return [command_line(t) for t in args.tandem]


def command_line(text: str) -> list[str]:
    """A shell-quoted gateway command; a relative program path is the repository's."""
    argv = shlex.split(text)
    if argv and "/" in argv[0]:
        argv[0] = str(REPO / argv[0])
    return argv


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    commands = gateway_commands(args)
    results: dict[str, list[float]] = {t: [] for t in args.tandem}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, command in zip(args.tandem, commands, strict=True):
                cost = measure(command, args, Path(tmp))
                results[name].append(cost)
                print(f"round {round_ + 1} {name}: {cost:.1f} us/chunk", flush=True)
    first = statistics.median(results[args.tandem[0]])
    print(f"\n{args.requests} requests x {args.chunks} chunks at concurrency {args.concurrency}")
    for name, costs in results.items():
        median = statistics.median(costs)
        print(f"{name}: median {median:.1f} us/chunk ({median / first:.2f}x the first)")


if __name__ == "__main__":
    main()
