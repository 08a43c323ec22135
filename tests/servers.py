"""Real servers on loopback for tests: the fake upstream and Tandem itself, each in a thread, and
Tandem as its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.core.config import Settings
from gateway.observability.tracing import RequestTracer
from gateway.server.app import create_app
from loadtests.fake_upstream import FakeUpstream, Record, ServerThread

UPSTREAM_KEY_ENV = "TANDEM_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-secret-123"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    fake: FakeUpstream
    url: str

    def find(self, marker: str) -> Record:
        """The one recorded request whose body mentions `marker`."""
        hits = [r for r in self.fake.records if marker in str(r.body)]
        assert len(hits) == 1, f"{len(hits)} upstream requests mention {marker!r}"
        return hits[0]


def catalog_for(upstream_url: str) -> dict[str, Any]:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    return {
        "backends": {
            "up": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "model": "fake-model",
                "api_key_env": UPSTREAM_KEY_ENV,
                "read_timeout": 1.0,
            },
            "down": {"kind": "openai", "base_url": down, "model": "m", "connect_timeout": 1.0},
            "echo": {"kind": "echo"},
        },
        "models": {
            "relay": {"policy": "direct", "backends": {"main": "up"}},
            "down": {"policy": "direct", "backends": {"main": "down"}},
            "echo": {"policy": "direct", "backends": {"main": "echo"}},
            "pair": {
                "policy": "direct",
                "backends": {"small": "echo", "large": "up"},
                "params": {"role": "small"},
                "overrides": {"role": {"choices": ["small", "large"]}},
            },
        },
    }


def write_catalog(directory: Path, catalog: dict[str, Any]) -> Path:
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


@contextmanager
def serve_gateway(
    catalog_path: Path, tracer: RequestTracer | None = None, **settings: Any
) -> Iterator[str]:
    """Tandem on a free loopback port; yields its base URL. The test process keeps Python's own
    collector schedule unless a test asks for Tandem's (`gc_interval_seconds`)."""
    settings.setdefault("gc_interval_seconds", 0)
    app = create_app(Settings(config=catalog_path, **settings), tracer=tracer)
    with ServerThread(app) as server:
        yield server.url


@contextmanager
def serve_process(
    catalog_path: Path, *flags: str, env: dict[str, str] | None = None, grace: float = 10
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`tandem serve` as a user runs it, in its own process (its own interpreter lock: a test's
    client in this process does not slow it down); settings come as `TANDEM_*` variables."""
    port = closed_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(catalog_path)]
    process = subprocess.Popen(
        [*argv, "--port", str(port), *flags],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # not yet listening, or not yet ready
        else:
            raise AssertionError("tandem did not start")
        yield process, url
    finally:
        # SIGTERM, not SIGKILL: a killed supervisor would leave its worker processes behind
        process.terminate()
        try:
            process.wait(timeout=grace + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
