"""Start the fake upstream, Tandem, LiteLLM's proxy and vLLM's router as pinned processes on
loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

REPO = Path(__file__).resolve().parent.parent
ALIAS = "relay"
UPSTREAM_MODEL = "fake-model"


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str  # ends in /v1
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """Prefix `taskset -c cpus` so the process and its threads stay on those cores."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *argv]
    return argv


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(service: Service, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(f"{service.base_url}/models"):
        if service.process.poll() is not None or time.monotonic() > deadline:
            tail = service.log.read_text(errors="replace")[-2000:]
            stop(service)
            raise RuntimeError(f"{service.name} did not start:\n{tail}")
        time.sleep(0.2)


def start(
    name: str,
    argv: list[str],
    port: int,
    logs: Path,
    cpus: str | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 90,
) -> Service:
    log = logs / f"{name}.log"
    out: IO[bytes] = log.open("wb")
    process = subprocess.Popen(
        pinned(argv, cpus),
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    out.close()
    service = Service(name, process, f"http://127.0.0.1:{port}/v1", log)
    _wait_ready(service, ready_timeout_s)
    return service


def stop(service: Service) -> None:
    if service.process.poll() is None:
        service.process.terminate()
        try:
            service.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@contextmanager
def running(services: list[Service]) -> Iterator[list[Service]]:
    try:
        yield services
    finally:
        for service in reversed(services):
            stop(service)


def start_upstream(logs: Path, cpus: str | None, ttft: float, itl: float, chunks: int) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "loadtests.fake_upstream", "--port", str(port)]
    argv += ["--ttft", str(ttft), "--itl", str(itl), "--chunks", str(chunks), "--no-record"]
    return start("upstream", argv, port, logs, cpus)


def start_tandem(logs: Path, cpus: str | None, upstream: Service, tandem: list[str]) -> Service:
    """Tandem's `direct` policy in front of `upstream`; `tandem` is the command that runs it."""
    catalog = {
        "backends": {
            "fake": {
                "kind": "openai",
                "base_url": upstream.base_url,
                "model": UPSTREAM_MODEL,
                "read_timeout": 60,
            }
        },
        "models": {ALIAS: {"policy": "direct", "backends": {"main": "fake"}}},
    }
    path = logs / "tandem.yaml"
    path.write_text(yaml.safe_dump(catalog))
    port = free_port()
    # Warning level: the load under test is the relay, not the access log's terminal output.
    argv = [*tandem, "serve", "--config", str(path), "--port", str(port), "--workers", "1"]
    return start("tandem", [*argv, "--log-level", "warning"], port, logs, cpus)


def start_floor(logs: Path, cpus: str | None, upstream: Service, python: Path) -> Service:
    """`loadtests.floor_relay` in front of `upstream`, run by Tandem's own Python, so that it
    has Tandem's uvicorn and aiohttp: what the HTTP stack costs without Tandem's work."""
    port = free_port()
    argv = [str(python), "-m", "loadtests.floor_relay", "--port", str(port)]
    return start("floor", [*argv, "--upstream", upstream.base_url], port, logs, cpus)


def start_litellm(logs: Path, cpus: str | None, upstream: Service, litellm: Path) -> Service:
    config = {
        "model_list": [
            {
                "model_name": ALIAS,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": upstream.base_url,
                    "api_key": "unused",
                },
            }
        ],
    }
    path = logs / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [str(litellm), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    # The cost map is fetched from the internet at start unless told to use the packaged copy.
    # Neither gateway checks keys in this comparison, so both do the same work per request.
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    return start("litellm", [*argv, "--num_workers", "1"], port, logs, cpus, env)


def start_router(logs: Path, cpus: str | None, upstream: Service, router: Path) -> Service:
    """vLLM's Rust router (vllm-router) in front of `upstream`: the byte relay that
    ../shared/PERFORMANCE.md measured as the floor a gateway can approach, here measured in the
    same run. It forwards the request's model name as is, which the fake upstream accepts."""
    port = free_port()
    worker = upstream.base_url.removesuffix("/v1")
    argv = [str(router), "--worker-urls", worker, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--policy", "round_robin"]  # one worker: the cheapest choice
    # metrics on, as Tandem's are, on a port of their own (its default may be taken)
    argv += ["--prometheus-port", str(free_port())]
    return start("router", [*argv, "--log-level", "warning"], port, logs, cpus)
