"""Side by side in one run: the same load against the fake upstream directly, through vLLM's
Rust router (the anchor a relay is measured against), through Tandem's `direct` policy, through
LiteLLM's proxy, and (`--targets ... floor`, not by default) through `loadtests.floor_relay`,
uvicorn and aiohttp with nothing of Tandem between them, written to loadtests/results/.

The upstream and this process (the load generator) share one core, each gateway has the other
to itself, as ../shared/PERFORMANCE.md measured its anchors. Targets take turns at each load
level, so slow drift on a shared machine hits all of them alike.

`make loadtest` runs it from the load-test environment (`make loadtest-env` builds it):
`.venv-loadtest/bin/python -m loadtests.compare --concurrency 10 50 200 --rate 40`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from loadtests.client import Target
from loadtests.environment import describe, loadavg
from loadtests.loadgen import Scenario, run_scenario
from loadtests.report import Report, format_table
from loadtests.services import (
    ALIAS,
    REPO,
    UPSTREAM_MODEL,
    Service,
    running,
    start_floor,
    start_litellm,
    start_router,
    start_tandem,
    start_upstream,
)
from loadtests.summary import ratio_table, repeat_table, write_markdown

COOLDOWN_S = 3.0  # lets a saturated gateway finish the streams the last scenario cancelled


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="*", default=[10, 50, 200])
    parser.add_argument("--rate", type=float, nargs="*", default=[40.0], help="Poisson req/s")
    parser.add_argument("--duration", type=float, default=25.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--ttft", type=float, default=0.02)
    parser.add_argument("--itl", type=float, default=0.01)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--targets", nargs="*", default=["direct", "router", "tandem", "litellm"])
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each load level this many times, the targets taking turns each time; "
        "the summary gives the median and range over the repeats",
    )
    parser.add_argument("--client-cpus", default="0", help="cores for load generator + upstream")
    parser.add_argument("--gateway-cpus", default="1", help="cores for the gateway under test")
    parser.add_argument("--tandem", default=".venv/bin/tandem", help="Tandem's command")
    parser.add_argument("--out", type=Path, default=REPO / "loadtests" / "results")
    parser.add_argument("--name", default="compare", help="file stem of the results")
    return parser.parse_args(argv)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    timing = {"duration_s": args.duration, "warmup_s": args.warmup}
    closed = [Scenario(f"c{c}", concurrency=c, **timing) for c in args.concurrency]
    levels = closed + [Scenario(f"poisson{r:g}", rate=r, **timing) for r in args.rate]
    if args.repeat == 1:
        return levels
    return [
        replace(level, name=f"{level.name}#{k}")
        for level in levels
        for k in range(1, args.repeat + 1)
    ]


def start_all(args: argparse.Namespace, logs: Path) -> dict[str, Service]:
    up = start_upstream(logs, args.client_cpus, args.ttft, args.itl, args.chunks)
    services = {"upstream": up}
    try:
        if "tandem" in args.targets:
            command = [str(REPO / args.tandem)]
            services["tandem"] = start_tandem(logs, args.gateway_cpus, up, command)
        if "floor" in args.targets:
            python = REPO / Path(args.tandem).parent / "python"
            services["floor"] = start_floor(logs, args.gateway_cpus, up, python)
        if "litellm" in args.targets:
            litellm = Path(sys.executable).parent / "litellm"
            services["litellm"] = start_litellm(logs, args.gateway_cpus, up, litellm)
        if "router" in args.targets:
            router = Path(sys.executable).parent / "vllm-router"
            services["router"] = start_router(logs, args.gateway_cpus, up, router)
    except BaseException:
        for service in services.values():
            service.process.terminate()
        raise
    return services


def targets(services: dict[str, Service], names: list[str]) -> list[Target]:
    up = services["upstream"]
    found = [Target("direct", up.base_url, UPSTREAM_MODEL, upstream_pid=up.pid)]
    for name in names:
        if name in services and name != "upstream":
            gateway = services[name]
            found.append(Target(name, gateway.base_url, ALIAS, gateway.pid, up.pid))
    return [t for t in found if t.name in names]


async def measure(args: argparse.Namespace, services: dict[str, Service]) -> list[Report]:
    reports: list[Report] = []
    for scenario in scenarios(args):
        for target in targets(services, args.targets):
            report = await run_scenario(scenario, target, expected_chunks=args.chunks)
            reports.append(report)
            print(format_table([report]).splitlines()[-1], flush=True)
            await asyncio.sleep(COOLDOWN_S)
    return reports


def pin_self(cpus: str) -> None:
    """Keep the load generator on the upstream's core, off the gateway's."""
    wanted = {int(c) for c in cpus.split(",") if c}
    if hasattr(os, "sched_setaffinity") and wanted <= os.sched_getaffinity(0):
        os.sched_setaffinity(0, wanted)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_self(args.client_cpus)
    environment = describe(args)
    with tempfile.TemporaryDirectory(prefix="tandem-loadtest-") as tmp:
        services = start_all(args, Path(tmp))
        with running(list(services.values())):
            print(format_table([]), flush=True)
            reports = _run(measure(args, services))
    args.out.mkdir(parents=True, exist_ok=True)
    environment["load_average_after"] = loadavg()
    (args.out / f"{args.name}.json").write_text(
        json.dumps({"environment": environment, "reports": [asdict(r) for r in reports]}, indent=2)
    )
    write_markdown(args.out / f"{args.name}.md", environment, reports)
    _plot(args.out / f"{args.name}.png", reports)
    print(ratio_table(reports))
    if args.repeat > 1:
        print(repeat_table(reports))
    return 1 if any(r.errors for r in reports if r.target != "litellm") else 0


def _run(coroutine: object) -> list[Report]:
    try:
        import uvloop  # the loop the servers use too; cheaper per chunk than asyncio's

        return uvloop.run(coroutine)  # type: ignore[arg-type,no-any-return]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def _plot(path: Path, reports: list[Report]) -> None:
    from loadtests.plot import plot  # matplotlib lives only in the load-test environment

    plot(path, reports)


if __name__ == "__main__":
    sys.exit(main())
