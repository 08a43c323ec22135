"""The comparison table: each gateway against the direct path of the same scenario."""

from __future__ import annotations

from loadtests.report import Cost, Report
from loadtests.stats import summarise
from loadtests.summary import ratio_table, repeat_table, title


def report(
    target: str, ttft_s: list[float], rps: float, unfinished: int = 0, scenario: str = "c50"
) -> Report:
    return Report(
        scenario=scenario,
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


def test_repeats_are_compared_in_pairs_and_summed_up_by_their_median_and_range() -> None:
    # three repeats; the gateway adds 2 ms, then 0.5 ms, then takes 1 ms off a slow direct run
    direct_ttft = {"c50#1": 0.020, "c50#2": 0.020, "c50#3": 0.023}
    gateway_ttft = {"c50#1": 0.022, "c50#2": 0.0205, "c50#3": 0.022}
    gateway_rps = {"c50#1": 63.0, "c50#2": 77.0, "c50#3": 70.0}
    reports = []
    for name in direct_ttft:
        reports.append(report("direct", [direct_ttft[name]] * 10, rps=70.0, scenario=name))
        reports.append(
            report("tandem", [gateway_ttft[name]] * 10, gateway_rps[name], scenario=name)
        )

    rows = repeat_table(reports).splitlines()

    assert len(rows) == 3  # header, rule, one gateway at one load level
    cells = [cell.strip() for cell in rows[2].strip("|").split("|")]
    assert cells[:4] == ["50 streams", "tandem", "3", "+0.5 (-1.0..+2.0)"]
    assert cells[4] == "+0.5 (-1.0..+2.0)"  # every sample is the same, so p99 moves with p50
    assert cells[5] == "100.0% (90.0%..110.0%)"
    assert cells[6] == "+0.00 (+0.00..+0.00)"
    assert cells[8] == "0/2100"


def test_the_title_names_the_gateways_that_ran() -> None:
    direct = report("direct", [0.02], rps=70.0)
    assert title([direct]) == "# The direct path alone, one run"
    assert title([direct, report("tandem", [0.02], rps=70.0)]).startswith("# Tandem against")
    everyone = [
        report(name, [0.02], rps=70.0) for name in ("litellm", "direct", "tandem", "router")
    ]
    assert title(everyone) == (
        "# Tandem, vLLM's router and LiteLLM against the direct path, one run"
    )
