"""CPU per streamed chunk when reading an SSE stream with httpx vs aiohttp.

The relay's hot path reads every upstream chunk, so its client's per-chunk cost bounds the
gateway's. Both clients read the same fake upstream (a separate process, pinned away when
`taskset` exists) line by line, as `gateway/backends/openai_http.py` does; the number is this
process's CPU time divided by the chunks read.

    python -m benchmarks.http_clients [--streams 200] [--chunks 64] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from tests.servers import closed_port

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def read_httpx(url: str, streams: int, concurrency: int) -> int:
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> int:
            async with client.stream("POST", url, json=BODY) as response:
                return sum([1 async for line in response.aiter_lines() if line.startswith("data:")])

        return await fan_out(one, streams, concurrency)


async def read_aiohttp(url: str, streams: int, concurrency: int) -> int:
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(url, json=BODY) as response:
                return sum([1 async for line in response.content if line.startswith(b"data:")])

        return await fan_out(one, streams, concurrency)


async def fan_out(one: Callable[[], Awaitable[int]], streams: int, concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)

    async def limited() -> int:
        async with gate:
            return await one()

    return sum(await asyncio.gather(*(limited() for _ in range(streams))))


def start_upstream(port: int, chunks: int) -> subprocess.Popen[bytes]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    command = [
        *pin,
        sys.executable,
        "-m",
        "loadtests.fake_upstream",
        "--port",
        str(port),
        "--ttft",
        "0",
        "--itl",
        "0",
        "--chunks",
        str(chunks),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    return process


def measure(
    name: str, reader: Callable[[str, int, int], Awaitable[int]], url: str, args: argparse.Namespace
) -> float:
    asyncio.run(reader(url, 5, 5))  # warm up: imports, connections
    cpu = time.process_time()
    chunks = asyncio.run(reader(url, args.streams, args.concurrency))
    per_chunk = (time.process_time() - cpu) / chunks * 1e6
    print(f"| {name} | {chunks} | {per_chunk:.1f} |")
    return per_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    port = closed_port()
    upstream = start_upstream(port, args.chunks)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        print("| client | chunks read | CPU us per chunk |\n|---|---|---|")
        slow = measure("httpx", read_httpx, url, args)
        fast = measure("aiohttp", read_aiohttp, url, args)
        print(f"\nhttpx costs {slow / fast:.1f}x aiohttp's CPU per chunk")
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
