"""A seconds-long run of the load harness against Tandem and the fake upstream, both real
processes on loopback, must produce a complete report with sane numbers."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from loadtests.client import Target
from loadtests.fake_upstream import FakeConfig, FakeUpstream, ServerThread
from loadtests.loadgen import Scenario, run_scenario
from loadtests.report import format_table
from loadtests.services import (
    ALIAS,
    Service,
    running,
    start_floor,
    start_tandem,
    start_upstream,
)
from loadtests.stats import max_in_window, percentile

TTFT_S = 0.03
ITL_S = 0.005
CHUNKS = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    logs = tmp_path_factory.mktemp("loadtest")
    upstream = start_upstream(logs, None, ttft=TTFT_S, itl=ITL_S, chunks=CHUNKS)
    with running([upstream]):
        tandem = start_tandem(logs, None, upstream, [sys.executable, "-m", "gateway"])
        with running([tandem]):
            yield upstream, tandem


SCENARIO = Scenario("smoke", concurrency=4, duration_s=2.0, warmup_s=0.5, drain_s=5.0)


async def test_smoke_run_through_tandem_gives_a_complete_sane_report(
    stack: tuple[Service, Service],
) -> None:
    upstream, tandem = stack
    target = Target("tandem", tandem.base_url, ALIAS, pid=tandem.pid, upstream_pid=upstream.pid)

    report = await run_scenario(SCENARIO, target, expected_chunks=CHUNKS)

    assert report.errors == 0
    assert report.error_kinds == {}
    ideal_s = TTFT_S + ITL_S * (CHUNKS - 1)
    # 4 closed-loop clients over 2 s can finish at most 4 * 2 / ideal requests
    assert 4 <= report.requests <= 4 * SCENARIO.duration_s / ideal_s + 4
    assert report.chunks_per_request == (CHUNKS, CHUNKS)
    assert report.ttft_ms.p50 >= TTFT_S * 1000
    assert report.ttft_ms.p50 <= report.ttft_ms.p95 <= report.ttft_ms.p99 <= report.ttft_ms.max
    assert report.itl_ms.count == report.requests * (CHUNKS - 1)
    # The mean, not p50: a busy machine can bunch chunks, but not shorten a stream's span.
    assert report.itl_ms.mean >= ITL_S * 1000 * 0.5
    assert report.e2e_ms.p50 >= ideal_s * 1000
    assert report.rps == pytest.approx(report.requests / report.window_s)
    assert report.tokens_per_s == pytest.approx(report.rps * CHUNKS, rel=0.5)
    assert 0 <= report.burst_fraction <= 1
    assert 1 <= report.max_burst <= CHUNKS
    for cost in (report.gateway, report.upstream):
        assert cost.cpu_percent is not None
        assert 0 < cost.cpu_percent < 400
        assert cost.cpu_us_per_chunk is not None
        assert cost.cpu_us_per_chunk > 0
        assert cost.rss_start_mb is not None
        assert cost.rss_end_mb is not None
        assert cost.rss_start_mb > 10
        assert cost.wait_percent is not None
        assert cost.wait_percent >= 0
    assert 0 < report.machine_busy_percent <= 100
    assert report.loadgen.cpu_percent is not None
    assert report.loadgen.cpu_percent > 0
    assert all(not _has_nan(value) for value in _leaves(asdict(report)))
    assert "| smoke | tandem |" in format_table([report])


async def test_errors_from_the_upstream_are_counted_not_raised(
    stack: tuple[Service, Service],
) -> None:
    upstream, _ = stack
    target = Target("direct", upstream.base_url, "fake-model")
    scenario = Scenario("short", concurrency=2, duration_s=1.0, warmup_s=0.2)

    report = await run_scenario(scenario, target, expected_chunks=CHUNKS + 1)

    assert report.requests > 0
    assert report.errors == report.requests
    assert set(report.error_kinds) == {"wrong_chunk_count"}
    assert report.rps == 0
    assert report.gateway.cpu_percent is None


async def test_fail_rate_fails_a_share_of_requests_and_no_record_keeps_none() -> None:
    fake = FakeUpstream(FakeConfig(chunks=3, fail_rate=0.5), record=False)
    with ServerThread(fake.app) as server:
        target = Target("direct", f"{server.url}/v1", "fake-model")
        scenario = Scenario("failing", concurrency=2, duration_s=0.5, warmup_s=0.0)
        report = await run_scenario(scenario, target, expected_chunks=3)

    assert set(report.error_kinds) == {"http_500"}
    assert 0.2 < report.error_rate < 0.8
    assert report.chunks_per_request == (3, 3)
    assert fake.records == []


def test_the_fake_upstream_answers_health_checks_as_vllm_does() -> None:
    """vLLM's router waits for GET /health on each worker before it serves (`make loadtest`
    puts it in front of this fake)."""
    with ServerThread(FakeUpstream(record=False).app) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.post(f"{server.url}/health").status_code == 405


@pytest.mark.parametrize("url", ["http://192.0.2.7:8000/v1", "http://example.com/v1"])
async def test_refuses_targets_off_this_machine(url: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        await run_scenario(Scenario("x", concurrency=1), Target("t", url, "m"))


def test_percentile_and_burst_window() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert math.isnan(percentile([], 50))
    assert max_in_window([0.0, 0.01, 0.02]) == 1
    assert max_in_window([0.0, 0.01, 0.0101, 0.0102, 0.03]) == 3


def _leaves(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _has_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


async def test_the_floor_relay_passes_every_stream_through_intact(
    stack: tuple[Service, Service], tmp_path_factory: pytest.TempPathFactory
) -> None:
    upstream, _ = stack
    floor = start_floor(tmp_path_factory.mktemp("floor"), None, upstream, Path(sys.executable))
    with running([floor]):
        target = Target("floor", floor.base_url, ALIAS, pid=floor.pid)
        report = await run_scenario(SCENARIO, target, expected_chunks=CHUNKS)

    assert report.errors == 0
    assert report.requests >= 4
    assert report.chunks_per_request == (CHUNKS, CHUNKS)
    assert report.ttft_ms.p50 >= TTFT_S * 1000
