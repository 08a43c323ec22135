"""An async load generator for OpenAI-compatible streaming endpoints.

A scenario is either closed-loop (`concurrency` clients, each sending its next request as soon as
the last one ends) or open-loop (Poisson arrivals at `rate` requests/s). Each runs a warm-up whose
requests are not counted, then a measured window; requests still running at its end get
`drain_s` to finish and are then cancelled, so a run is bounded in time and in count.

Run alone against any server on loopback:
`python -m loadtests.loadgen --url http://127.0.0.1:8000/v1 --model relay --concurrency 10 50`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import aiohttp

from loadtests.client import Counters, Outcome, Target, chat_body, stream_once
from loadtests.report import Report, Snapshot, build_report, format_table


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int | None = None  # closed loop
    rate: float | None = None  # Poisson arrivals per second
    duration_s: float = 20.0
    warmup_s: float = 5.0
    drain_s: float = 15.0
    max_requests: int = 200_000
    max_in_flight: int = 2_000  # open loop only: arrivals beyond this are counted as shed
    seed: int = 1


def require_loopback(url: str) -> None:
    """Load goes to this machine only: refuse any other host before sending a request."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"load tests target loopback only, not {host!r}")


class Run:
    """The shared state of one scenario against one target."""

    def __init__(self, scenario: Scenario, target: Target, expected_chunks: int | None) -> None:
        require_loopback(target.base_url)
        self.scenario = scenario
        self.target = target
        self.expected_chunks = expected_chunks
        self.url = f"{target.base_url}/chat/completions"
        self.body = chat_body(target.model)
        self.counters = Counters()
        self.outcomes: list[Outcome] = []
        self.issued = 0
        self.shed = 0
        self.window: tuple[float, float] = (0.0, 0.0)
        self.snapshots: list[Snapshot] = []

    def may_issue(self) -> bool:
        return time.perf_counter() < self.window[1] and self.issued < self.scenario.max_requests

    async def one(self, session: aiohttp.ClientSession) -> None:
        self.issued += 1
        outcome = await stream_once(
            session, self.url, self.body, self.counters, self.expected_chunks
        )
        self.outcomes.append(outcome)

    async def closed_loop_client(self, session: aiohttp.ClientSession) -> None:
        while self.may_issue():
            await self.one(session)

    async def poisson_arrivals(self, session: aiohttp.ClientSession) -> list[asyncio.Task[None]]:
        rng = random.Random(self.scenario.seed)
        rate = self.scenario.rate or 1.0
        tasks: set[asyncio.Task[None]] = set()
        spawned: list[asyncio.Task[None]] = []
        next_at = time.perf_counter()
        while self.may_issue():
            next_at += rng.expovariate(rate)
            await asyncio.sleep(max(next_at - time.perf_counter(), 0))
            if len(tasks) >= self.scenario.max_in_flight:
                self.shed += 1
                continue
            task = asyncio.create_task(self.one(session))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            spawned.append(task)
        return spawned

    async def sample_window(self) -> None:
        """Snapshot CPU, memory and counters at the start and the end of the measured window."""
        for edge in self.window:
            await asyncio.sleep(max(edge - time.perf_counter(), 0))
            self.snapshots.append(Snapshot.take(self.target, self.counters))


async def _drain(tasks: list[asyncio.Task[None]], grace_s: float) -> int:
    """Wait up to `grace_s` for the tasks; cancel the rest; return how many were cancelled."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


async def run_scenario(
    scenario: Scenario, target: Target, expected_chunks: int | None = None
) -> Report:
    """Run one scenario against one target and summarise what the measured window saw."""
    run = Run(scenario, target, expected_chunks)
    start = time.perf_counter()
    run.window = (start + scenario.warmup_s, start + scenario.warmup_s + scenario.duration_s)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sampler = asyncio.create_task(run.sample_window())
        if scenario.concurrency:
            tasks = [
                asyncio.create_task(run.closed_loop_client(session))
                for _ in range(scenario.concurrency)
            ]
        else:
            tasks = await run.poisson_arrivals(session)
        await sampler
        unfinished = await _drain(tasks, scenario.drain_s)
    return build_report(run_facts(run), run.outcomes, run.snapshots, unfinished)


def run_facts(run: Run) -> dict[str, object]:
    scenario = run.scenario
    return {
        "scenario": scenario.name,
        "target": run.target.name,
        "concurrency": scenario.concurrency,
        "rate": scenario.rate,
        "window": run.window,
        "shed": run.shed,
        "expected_chunks": run.expected_chunks,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL ending in /v1 (loopback)")
    parser.add_argument("--model", default="relay")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[10])
    parser.add_argument("--rate", type=float, nargs="*", default=[], help="Poisson req/s")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--chunks", type=int, help="expected text chunks per answer")
    parser.add_argument("--pid", type=int, help="gateway process to measure")
    parser.add_argument("--json", help="write the reports here as JSON")
    return parser.parse_args(argv)


def scenarios_from(args: argparse.Namespace) -> list[Scenario]:
    timing = {"duration_s": args.duration, "warmup_s": args.warmup}
    closed = [Scenario(f"c{c}", concurrency=c, **timing) for c in args.concurrency]
    poisson = [Scenario(f"rate{r:g}", rate=r, **timing) for r in args.rate]
    return closed + poisson


async def amain(args: argparse.Namespace) -> list[Report]:
    target = Target("target", args.url.rstrip("/"), args.model, pid=args.pid)
    reports = []
    for scenario in scenarios_from(args):
        reports.append(await run_scenario(scenario, target, args.chunks))
        print(format_table(reports[-1:]), flush=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reports = asyncio.run(amain(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in reports], out, indent=2)
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
