"""What one scenario measured: the report's fields, how they are computed, and a table row."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loadtests.procstat import Usage, machine_busy_s, own_usage, usage
from loadtests.stats import BURST_GAP_S, Summary, summarise

if TYPE_CHECKING:
    from loadtests.client import Counters, Outcome, Target

MB = 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    at: float
    events: int
    chunks: int
    loadgen: Usage
    machine: tuple[float, float]  # (busy, total) CPU seconds over all cores
    gateway: Usage | None
    upstream: Usage | None

    @classmethod
    def take(cls, target: Target, counters: Counters) -> Snapshot:
        return cls(
            at=time.perf_counter(),
            events=counters.events,
            chunks=counters.chunks,
            loadgen=own_usage(),
            machine=machine_busy_s(),
            gateway=usage(target.pid) if target.pid else None,
            upstream=usage(target.upstream_pid) if target.upstream_pid else None,
        )


@dataclass(frozen=True)
class Cost:
    """CPU and memory of one process over the measured window (None where not measured)."""

    cpu_percent: float | None = None
    cpu_us_per_chunk: float | None = None  # per text chunk the clients received
    cpu_us_per_event: float | None = None  # per SSE event, role/finish/usage/[DONE] included
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    wait_percent: float | None = None  # runnable but kept off a core by other work


@dataclass(frozen=True)
class Report:
    scenario: str
    target: str
    concurrency: int | None
    rate: float | None
    window_s: float
    requests: int  # completed inside the measured window
    errors: int
    error_rate: float
    error_kinds: dict[str, int]  # over the whole run, warm-up and drain included
    unfinished: int  # cancelled after the drain grace
    shed: int  # Poisson arrivals refused by the in-flight cap
    rps: float
    tokens_per_s: float
    chunks_per_request: tuple[int, int]  # (min, max) among successful requests
    ttft_ms: Summary
    itl_ms: Summary
    e2e_ms: Summary
    burst_fraction: float  # share of chunk gaps under BURST_GAP_S
    max_burst: int  # most chunks of one stream inside BURST_GAP_S
    machine_busy_percent: (
        float  # all cores; above what gateway + upstream + loadgen explain = others
    )
    gateway: Cost = field(default_factory=Cost)
    upstream: Cost = field(default_factory=Cost)
    loadgen: Cost = field(default_factory=Cost)


def _cost(start: Usage | None, end: Usage | None, window: float, chunks: int, events: int) -> Cost:
    if start is None or end is None:
        return Cost()
    cpu = end.cpu_s - start.cpu_s
    return Cost(
        cpu_percent=100 * cpu / window,
        cpu_us_per_chunk=1e6 * cpu / chunks if chunks else None,
        cpu_us_per_event=1e6 * cpu / events if events else None,
        rss_start_mb=start.rss_bytes / MB,
        rss_end_mb=end.rss_bytes / MB,
        wait_percent=100 * (end.wait_s - start.wait_s) / window,
    )


def _costs(snapshots: list[Snapshot]) -> dict[str, Cost]:
    first, last = snapshots[0], snapshots[-1]
    window = last.at - first.at
    chunks = last.chunks - first.chunks
    events = last.events - first.events
    return {
        "gateway": _cost(first.gateway, last.gateway, window, chunks, events),
        "upstream": _cost(first.upstream, last.upstream, window, chunks, events),
        "loadgen": _cost(first.loadgen, last.loadgen, window, chunks, events),
    }


def _machine_busy_percent(snapshots: list[Snapshot]) -> float:
    """How busy all cores were over the window, this run and everyone else's work together."""
    (busy0, total0), (busy1, total1) = snapshots[0].machine, snapshots[-1].machine
    return 100 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else math.nan


def build_report(
    facts: dict[str, Any], outcomes: list[Outcome], snapshots: list[Snapshot], unfinished: int
) -> Report:
    start, end = facts["window"]
    measured = [o for o in outcomes if start <= o.ended <= end]
    good = [o for o in measured if o.error is None]
    errors = len(measured) - len(good)
    window = end - start
    chunk_counts = [o.chunks for o in good]
    gaps = [g for o in good for g in o.gaps]
    costs = _costs(snapshots)
    return Report(
        scenario=facts["scenario"],
        target=facts["target"],
        concurrency=facts["concurrency"],
        rate=facts["rate"],
        window_s=window,
        requests=len(measured),
        errors=errors,
        error_rate=errors / len(measured) if measured else math.nan,
        error_kinds=dict(Counter(o.error for o in outcomes if o.error)),
        unfinished=unfinished,
        shed=facts["shed"],
        rps=len(good) / window,
        tokens_per_s=(snapshots[-1].chunks - snapshots[0].chunks) / window,
        chunks_per_request=(min(chunk_counts, default=0), max(chunk_counts, default=0)),
        ttft_ms=summarise([o.ttft for o in good if o.ttft is not None]),
        itl_ms=summarise(gaps),
        e2e_ms=summarise([o.ended - o.started for o in good]),
        burst_fraction=sum(g < BURST_GAP_S for g in gaps) / len(gaps) if gaps else math.nan,
        max_burst=max((o.max_burst for o in good), default=0),
        machine_busy_percent=_machine_busy_percent(snapshots),
        **costs,
    )


COLUMNS = (
    "scenario | target | req/s | tok/s | err | TTFT p50/p95/p99 ms | ITL p50/p99 ms "
    "| e2e p50/p99 ms | bursts | gw CPU % | gw us/chunk | gw wait % | gw RSS MB "
    "| upstream CPU % | loadgen CPU % | machine busy %"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def row(r: Report) -> str:
    ttft, itl, e2e = r.ttft_ms, r.itl_ms, r.e2e_ms
    cells = [
        r.scenario,
        r.target,
        _num(r.rps),
        _num(r.tokens_per_s, 0),
        f"{r.errors}/{r.requests}",
        f"{_num(ttft.p50)} / {_num(ttft.p95)} / {_num(ttft.p99)}",
        f"{_num(itl.p50, 2)} / {_num(itl.p99, 2)}",
        f"{_num(e2e.p50, 0)} / {_num(e2e.p99, 0)}",
        f"{_num(100 * r.burst_fraction)}% (max {r.max_burst})",
        _num(r.gateway.cpu_percent, 0),
        _num(r.gateway.cpu_us_per_chunk, 0),
        _num(r.gateway.wait_percent, 0),
        f"{_num(r.gateway.rss_start_mb, 0)} -> {_num(r.gateway.rss_end_mb, 0)}",
        _num(r.upstream.cpu_percent, 0),
        _num(r.loadgen.cpu_percent, 0),
        _num(r.machine_busy_percent, 0),
    ]
    return "| " + " | ".join(cells) + " |"


def format_table(reports: list[Report]) -> str:
    header = "| " + COLUMNS + " |"
    rule = "|" + "---|" * (COLUMNS.count("|") + 1)
    return "\n".join([header, rule, *(row(r) for r in reports)])
