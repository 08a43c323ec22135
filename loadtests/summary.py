"""The comparison as markdown: each gateway against the direct path measured in the same run."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from loadtests.report import Report, format_table

RATIO_COLUMNS = (
    "load | gateway | added TTFT p50 / p99 ms | req/s, % of direct | ITL p99 ms, direct -> gw "
    "| bursts (gaps < 1 ms) | errors | gateway CPU % (kept waiting %) | gateway CPU us/chunk"
)


def load_label(report: Report) -> str:
    if report.concurrency:
        return f"{report.concurrency} streams"
    return f"Poisson {report.rate:g} req/s"


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+,.1f}"


def _plain(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def ratio_row(direct: Report, gateway: Report) -> str:
    share = 100 * gateway.rps / direct.rps if direct.rps else math.nan
    cells = [
        load_label(gateway),
        gateway.target,
        f"{_signed(gateway.ttft_ms.p50 - direct.ttft_ms.p50)} / "
        f"{_signed(gateway.ttft_ms.p99 - direct.ttft_ms.p99)}",
        f"{_plain(share)}%",
        f"{_plain(direct.itl_ms.p99, 1)} -> {_plain(gateway.itl_ms.p99, 1)}",
        f"{_plain(100 * gateway.burst_fraction, 1)}% "
        f"(direct {_plain(100 * direct.burst_fraction, 1)}%)",
        f"{gateway.errors}/{gateway.requests}"
        + (f", {gateway.unfinished} cancelled" if gateway.unfinished else ""),
        f"{_plain(gateway.gateway.cpu_percent)} ({_plain(gateway.gateway.wait_percent)})",
        _plain(gateway.gateway.cpu_us_per_chunk),
    ]
    return "| " + " | ".join(cells) + " |"


def ratio_table(reports: list[Report]) -> str:
    direct = {r.scenario: r for r in reports if r.target == "direct"}
    rows = [ratio_row(direct[r.scenario], r) for r in reports if r.target != "direct"]
    header = "| " + RATIO_COLUMNS + " |"
    rule = "|" + "---|" * (RATIO_COLUMNS.count("|") + 1)
    return "\n".join([header, rule, *rows])


REPEAT_COLUMNS = (
    "load | gateway | runs | added TTFT p50 ms | added TTFT p99 ms | req/s, % of direct "
    "| ITL p50 ms, gw - direct "
    "| bursts % | errors"
)


def _spread(values: list[float], unit: str = "", signed: bool = False, digits: int = 1) -> str:
    """The median and, with more than one value, the range: `+0.4 (-0.3..+1.1)`."""

    def shown(value: float) -> str:
        return f"{value:{'+' if signed else ''},.{digits}f}{unit}"

    median = shown(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({shown(min(values))}..{shown(max(values))})"


def repeat_table(reports: list[Report]) -> str:
    """Each gateway at each load level over the repeats of a run (`--repeat`): the median of
    the per-repeat comparisons with its range, so that one noisy minute cannot decide a goal."""
    direct = {r.scenario: r for r in reports if r.target == "direct"}
    pairs: dict[tuple[str, str], list[tuple[Report, Report]]] = defaultdict(list)
    for report in reports:
        if report.target != "direct" and report.scenario in direct:
            pairs[(load_label(report), report.target)].append((direct[report.scenario], report))
    rows = []
    for (load, target), runs in pairs.items():
        ttft = [g.ttft_ms.p50 - d.ttft_ms.p50 for d, g in runs]
        tail = [g.ttft_ms.p99 - d.ttft_ms.p99 for d, g in runs]
        share = [100 * g.rps / d.rps for d, g in runs if d.rps]
        itl = [g.itl_ms.p50 - d.itl_ms.p50 for d, g in runs]
        bursts = [100 * g.burst_fraction for _, g in runs]
        errors = sum(g.errors for _, g in runs)
        cells = [
            load,
            target,
            str(len(runs)),
            _spread(ttft, signed=True),
            _spread(tail, signed=True),
            _spread(share, "%") if share else "-",
            _spread(itl, signed=True, digits=2),
            _spread(bursts),
            f"{errors}/{sum(g.requests for _, g in runs)}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    header = "| " + REPEAT_COLUMNS + " |"
    rule = "|" + "---|" * (REPEAT_COLUMNS.count("|") + 1)
    return "\n".join([header, rule, *rows])


GATEWAYS = {  # name: (title, what ran), in the order the reports list them
    "tandem": ("Tandem", lambda env: f"Tandem {env['tandem']}"),
    "router": (
        "vLLM's router",
        lambda env: f"vLLM's Rust router {env['vllm_router']} (round robin over the one upstream)",
    ),
    "litellm": ("LiteLLM", lambda env: f"LiteLLM proxy {env['litellm']} (1 worker)"),
    "floor": (
        "the bare uvicorn and aiohttp relay",
        lambda env: "loadtests/floor_relay.py: uvicorn and aiohttp with Tandem's versions, no work",
    ),
}


def _measured(reports: list[Report]) -> list[str]:
    """The gateways of the run, in the order of GATEWAYS."""
    present = {r.target for r in reports}
    return [name for name in GATEWAYS if name in present]


def title(reports: list[Report]) -> str:
    names = [GATEWAYS[name][0] for name in _measured(reports)]
    if not names:
        return "# The direct path alone, one run"
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    return f"# {listed} against the direct path, one run"


def _environment_lines(env: dict[str, Any], reports: list[Report]) -> list[str]:
    up = env["upstream"]
    gateways = "; ".join(GATEWAYS[name][1](env) for name in _measured(reports))
    return [
        f"- Measured {env['date_utc']} UTC on a {env['cores']}-core machine shared with other "
        f"developers' work (load average {env['load_average_before']} before the run, "
        f"{env['load_average_after']} after): read ratios, not absolute numbers.",
        f"- {gateways or 'No gateway'}; load generator: aiohttp {env['aiohttp']} on Python "
        f"{env['python']}.",
        f"- Fake upstream: TTFT {up['ttft_s'] * 1000:g} ms, {up['itl_s'] * 1000:g} ms between "
        f"chunks, {up['chunks']} one-word chunks + usage chunk. Closed-loop streaming clients; "
        f"{env['timing']['warmup_s']:g} s warm-up (not counted), then "
        f"{env['timing']['measured_s']:g} s measured per scenario and target.",
        f"- Load generator and upstream pinned to core {env['pinning']['loadgen_and_upstream']}, "
        f"the gateway alone on core {env['pinning']['gateway']}.",
    ]


def _repeat_lines(reports: list[Report]) -> list[str]:
    if not any("#" in r.scenario for r in reports):
        return []
    return [
        "## Over the repeats (median, and range)",
        "",
        "Each load level was measured several times, the targets taking turns each time; each "
        "repeat compares a gateway with the direct path of the same repeat.",
        "",
        repeat_table(reports),
        "",
    ]


def write_markdown(path: Path, env: dict[str, Any], reports: list[Report]) -> None:
    lines = [
        title(reports),
        "",
        *_environment_lines(env, reports),
        "",
        *_repeat_lines(reports),
        "## Each gateway against the direct path",
        "",
        ratio_table(reports),
        "",
        "## Every scenario",
        "",
        "TTFT counts to the first chunk that carries text. CPU % is over the measured window; "
        "us/chunk divides that CPU time by the text chunks the clients received. The load "
        "generator's own CPU is shown so a saturated client core can be told from a slow gateway. "
        "`gw wait %` is the time the gateway was runnable but kept off its core (from "
        "/proc/PID/task/*/schedstat): high values mean other work on the machine, not the "
        "gateway, set the pace. `machine busy %` covers all cores, everyone's work included.",
        "",
        format_table(reports),
        "",
    ]
    path.write_text("\n".join(lines))
