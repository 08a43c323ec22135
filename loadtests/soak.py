"""Soak: Tandem under steady streaming load for minutes, watching its memory and its errors.

`.venv-loadtest/bin/python -m loadtests.soak --minutes 10 --concurrency 50` (or `make soak`)
writes loadtests/results/soak.md: RSS after the warm-up and at the end, its growth, the peak,
the RSS every `--every` seconds, and every error seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtests.client import Target
from loadtests.compare import pin_self
from loadtests.environment import loadavg, tandem_revision
from loadtests.loadgen import Scenario, run_scenario
from loadtests.procstat import usage
from loadtests.report import Report, format_table
from loadtests.services import ALIAS, REPO, running, start_tandem, start_upstream

MB = 1024 * 1024


@dataclass(frozen=True)
class SoakResult:
    minutes: float
    concurrency: int
    rss_start_mb: float  # after the warm-up
    rss_end_mb: float
    rss_peak_mb: float
    growth_percent: float
    timeline: list[tuple[float, float]]  # (seconds since the warm-up ended, RSS MB)
    report: Report


async def sample_rss(pid: int, every_s: float, until: float) -> list[tuple[float, float]]:
    start = time.perf_counter()
    timeline = []
    while True:
        now = time.perf_counter()
        timeline.append((round(now - start, 1), usage(pid).rss_bytes / MB))
        if now >= until:
            return timeline
        await asyncio.sleep(min(every_s, max(until - now, 0.01)))


async def soak(args: argparse.Namespace, target: Target) -> SoakResult:
    duration = args.minutes * 60
    scenario = Scenario("soak", concurrency=args.concurrency, duration_s=duration, warmup_s=10)
    run = asyncio.create_task(run_scenario(scenario, target, expected_chunks=args.chunks))
    await asyncio.sleep(scenario.warmup_s)
    assert target.pid is not None
    timeline = await sample_rss(target.pid, args.every, time.perf_counter() + duration)
    report = await run
    start, end = timeline[0][1], timeline[-1][1]
    return SoakResult(
        minutes=args.minutes,
        concurrency=args.concurrency,
        rss_start_mb=start,
        rss_end_mb=end,
        rss_peak_mb=max(rss for _, rss in timeline),
        growth_percent=100 * (end - start) / start,
        timeline=timeline,
        report=report,
    )


def markdown(result: SoakResult, load: tuple[str, str], revision: str) -> str:
    r = result.report
    kinds = ", ".join(f"{k}: {v}" for k, v in r.error_kinds.items()) or "none"
    points = ", ".join(f"{t:g} s: {mb:.1f}" for t, mb in result.timeline)
    return "\n".join(
        [
            f"# Soak: Tandem, {result.concurrency} streams for {result.minutes:g} minutes",
            "",
            f"- RSS after warm-up {result.rss_start_mb:.1f} MB, at the end "
            f"{result.rss_end_mb:.1f} MB: growth {result.growth_percent:+.1f}% "
            f"(peak {result.rss_peak_mb:.1f} MB).",
            f"- {r.requests} requests measured, {r.errors} errors; error kinds over the whole "
            f"run: {kinds}; {r.unfinished} cancelled at the end.",
            f"- Tandem {revision}; load average before {load[0]}, after {load[1]} "
            "(a 2-core machine shared with other developers' work).",
            "",
            format_table([r]),
            "",
            f"RSS (MB) over time: {points}",
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument("--gateway-cpus", default="1")
    parser.add_argument("--tandem", default=".venv/bin/tandem")
    parser.add_argument("--out", type=Path, default=REPO / "loadtests" / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_self(args.client_cpus)
    before, revision = loadavg(), tandem_revision()
    with tempfile.TemporaryDirectory(prefix="tandem-soak-") as tmp:
        logs = Path(tmp)
        up = start_upstream(logs, args.client_cpus, 0.02, 0.01, args.chunks)
        with running([up]):
            tandem = start_tandem(logs, args.gateway_cpus, up, [str(REPO / args.tandem)])
            with running([tandem]):
                target = Target("tandem", tandem.base_url, ALIAS, tandem.pid, up.pid)
                result = asyncio.run(soak(args, target))
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result, (before, loadavg()), revision)
    (args.out / "soak.md").write_text(text)
    (args.out / "soak.json").write_text(json.dumps(asdict(result), indent=2))
    print(text)
    return 1 if result.report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
