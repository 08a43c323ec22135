"""The comparison table: each gateway against the direct path of the same scenario."""

from __future__ import annotations

from loadtests.report import Cost, Report
from loadtests.stats import summarise
from loadtests.summary import ratio_table


def report(target: str, ttft_s: list[float], rps: float, unfinished: int = 0) -> Report:
    return Report(
        scenario="c50",
        target=target,
        concurrency=50,
        rate=None,
        window_s=10.0,
        requests=int(rps * 10),
        errors=0,
        error_rate=0.0,
        error_kinds={},
        unfinished=unfinished,
        shed=0,
        rps=rps,
        tokens_per_s=rps * 64,
        chunks_per_request=(64, 64),
        ttft_ms=summarise(ttft_s),
        itl_ms=summarise([0.010, 0.011]),
        e2e_ms=summarise([0.65]),
        burst_fraction=0.0,
        max_burst=1,
        machine_busy_percent=50.0,
        gateway=Cost(cpu_percent=20.0, cpu_us_per_chunk=70.0, wait_percent=5.0),
    )


def test_ratio_rows_subtract_direct_and_divide_its_throughput() -> None:
    direct = report("direct", [0.020] * 100, rps=70.0)
    gateway = report("tandem", [0.021] * 98 + [0.050, 0.050], rps=63.0, unfinished=3)

    table = ratio_table([direct, gateway])

    rows = table.splitlines()
    assert len(rows) == 3  # header, rule, one gateway
    assert rows[2].startswith("| 50 streams | tandem | +1.0 / +30.0 | 90% |")
    assert "0/630, 3 cancelled" in rows[2]
    assert "20 (5)" in rows[2]
