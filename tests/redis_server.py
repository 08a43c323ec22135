"""Real Redis servers for tests: the shared one on 6379 (`make test` starts it when none answers)
and private ones on free ports that a test may kill, pause and restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers import closed_port

SHARED_URL_ENV = "TANDEM_TEST_REDIS_URL"
SHARED_URL = "redis://127.0.0.1:6379/0"


def answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def unique_prefix() -> str:
    """Keys of one test on a Redis other tests and developers share."""
    return f"tandem-test:{uuid.uuid4().hex[:12]}:"


class RedisServer:
    """`redis-server` on a free loopback port, without persistence, owned by one test."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run scripts/ensure-redis.sh"
        self.binary = binary
        self.port = closed_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(
            [self.binary, *args, "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not answers(self.port, timeout=0.2):
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.resume()
        self.kill()


@contextmanager
def shared_redis() -> Iterator[str]:
    """The Redis `make test` provides; a private one when none answers (plain `pytest`)."""
    url = os.environ.get(SHARED_URL_ENV, SHARED_URL)
    if url != SHARED_URL or answers(6379):
        yield url
        return
    with RedisServer() as server:
        yield server.url
