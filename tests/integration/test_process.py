"""`tandem` as a user runs it: the CLI's catalog errors, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers import Upstream, closed_port, serve_process


def tandem(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("catalog", "key", "reason"),
    [
        ("backends: [1, 2]", "backends", "dictionary"),
        (
            "backends: {a: {kind: warp}}\nmodels: {}",
            "backends.a.kind",
            "unknown backend kind 'warp'; known: echo, ",
        ),
        ("backends: {a: {kind: openai, model: m}}", "backends.a.base_url", "required"),
        ("backends: {a: {kind: echo, colour: red}}", "backends.a.colour", "not permitted"),
        (
            "models: {m: {policy: direct, backends: {main: ghost}}}",
            "models.m.backends.main",
            "no backend named 'ghost'",
        ),
        (
            "backends: {a: {kind: echo}}\nmodels: {m: {policy: magic, backends: {main: a}}}",
            "models.m.policy",
            "unknown policy 'magic'",
        ),
        (
            "backends: {a: {kind: echo}}\nmodels: {m: {policy: direct, backends: {x: a}}}",
            "models.m.params.role",
            "no backend plays the role 'main'",
        ),
        ("models: {m: {policy: direct", "line", "not valid YAML"),
        ("- just a list", "(root)", "mapping"),
    ],
)
def test_bad_catalog_exits_non_zero_naming_file_key_and_reason(
    tmp_path: Path, catalog: str, key: str, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(catalog)
    result = tandem("serve", "--config", str(path), "--port", str(closed_port()))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert key in result.stderr
    assert reason in result.stderr


def test_missing_catalog_file(tmp_path: Path) -> None:
    result = tandem("check", "--config", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 2
    assert "nowhere.yaml" in result.stderr


@pytest.mark.parametrize("content", ["", "\n\n", "# keys go here\n   # indented\n"])
def test_a_key_file_without_keys_refuses_to_start(tmp_path: Path, content: str) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(content)
    env = {"TANDEM_API_KEYS_FILE": str(keys)}
    result = tandem("serve", "--port", str(closed_port()), env=env)
    assert result.returncode == 2
    assert "tandem: bad settings:" in result.stderr
    assert f"{keys}: api_keys_file: holds no key" in result.stderr


def test_environment_overrides_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "backends: {a: {kind: echo}}\nmodels: {m: {policy: direct, backends: {main: a}}}"
    )
    assert tandem("check", "--config", str(path)).returncode == 0
    broken = tandem("check", "--config", str(path), env={"TANDEM_BACKENDS__A__KIND": "warp"})
    assert broken.returncode == 2
    assert "backends.a.kind" in broken.stderr


@contextmanager
def running(
    catalog: Path, grace: float, *flags: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {
        "TANDEM_SHUTDOWN_GRACE_SECONDS": str(grace),
        "TANDEM_GC_INTERVAL_SECONDS": "60",  # the default schedule, started and stopped
    }
    with serve_process(catalog, *flags, env=env, grace=grace) as served:
        yield served


def slow_catalog(tmp_path: Path, upstream_url: str) -> Path:
    path = tmp_path / "slow.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "backends": {
                    "up": {"kind": "openai", "base_url": upstream_url + "/v1", "model": "m"}
                },
                "models": {"relay": {"policy": "direct", "backends": {"main": "up"}}},
            }
        )
    )
    return path


def stream_request(chunks: int) -> dict[str, object]:
    return {
        "model": "relay",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
        "fake": {"chunks": chunks, "itl": 0.1},
    }


def test_sigterm_lets_in_flight_streams_finish(tmp_path: Path, upstream: Upstream) -> None:
    with (
        running(slow_catalog(tmp_path, upstream.url), grace=10) as (process, url),
        httpx.stream(
            "POST", url + "/v1/chat/completions", json=stream_request(15), timeout=10
        ) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/healthz", timeout=1)
        rest = list(lines)
        assert "data: [DONE]" in rest
        # uvicorn re-raises the signal once drained, as a well-behaved daemon does
        assert process.wait(timeout=10) in (0, -signal.SIGTERM)


def test_sigterm_cuts_streams_at_the_deadline(tmp_path: Path, upstream: Upstream) -> None:
    with (
        running(slow_catalog(tmp_path, upstream.url), grace=1) as (process, url),
        httpx.stream(
            "POST", url + "/v1/chat/completions", json=stream_request(100), timeout=30
        ) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with pytest.raises(httpx.TransportError):
            list(lines)
        process.wait(timeout=10)
        assert time.monotonic() - signalled < 4


def test_several_workers_serve_the_same_catalog(tmp_path: Path, upstream: Upstream) -> None:
    with running(slow_catalog(tmp_path, upstream.url), 1, "--workers", "2") as (_, url):
        answers = [
            httpx.post(
                url + "/v1/chat/completions",
                json={
                    "model": "relay",
                    "messages": [{"role": "user", "content": "x"}],
                    "fake": {"chunks": 2},
                },
                timeout=10,
            )
            for _ in range(6)
        ]
        assert [a.status_code for a in answers] == [200] * 6
        assert {a.json()["choices"][0]["message"]["content"] for a in answers} == {"w0 w1"}
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "relay"
