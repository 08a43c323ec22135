"""A token session's routing key: every call of one session carries the same key under the
`openai` backend's `session_header`, with the client request's id beside it, so a sticky
router in front of replicas keeps the session on one of them.

Tandem (collab: the tiny model small, the large one over HTTP) talks to a recording proxy in
front of another Tandem serving the tiny model; the proxy keeps each call's headers and relays
the real answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from openai import OpenAI
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.backends.openai_http import OpenAIBackendConfig
from loadtests.fake_upstream import ServerThread
from tests.servers import serve_gateway, write_catalog

PROMPT = "The quick brown fox jumps over the lazy dog. Answer number"


@dataclass
class Call:
    path: str
    headers: dict[str, str]


class Recorder:
    """Relays every call to `target` and keeps its path and headers."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls: list[Call] = []
        self.url = ""  # where it listens, once served
        methods = ["GET", "POST"]
        self.app = Starlette(routes=[Route("/{path:path}", self.relay, methods=methods)])

    async def relay(self, request: Request) -> Response:
        self.calls.append(Call(request.url.path, dict(request.headers)))
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        async with httpx.AsyncClient(base_url=self.target, timeout=60) as client:
            answer = await client.request(
                request.method, request.url.path, content=await request.body(), headers=headers
            )
        kept = {"content-type": answer.headers.get("content-type", "application/json")}
        return Response(answer.content, answer.status_code, headers=kept)

    def of(self, request_id: str) -> list[Call]:
        return [c for c in self.calls if c.headers.get("x-request-id") == request_id]


@pytest.fixture(scope="module")
def recorder(local_gateway: tuple[str, FastAPI]) -> Iterator[Recorder]:
    recorder = Recorder(local_gateway[0])
    with ServerThread(recorder.app) as proxy:
        recorder.url = proxy.url
        yield recorder


@pytest.fixture(scope="module")
def replicas(local_gateway: tuple[str, FastAPI]) -> Iterator[list[Recorder]]:
    """Three recording proxies, as three replicas of one model (`base_urls`)."""
    recorders = [Recorder(local_gateway[0]) for _ in range(3)]
    with ExitStack() as stack:
        for recorder in recorders:
            recorder.url = stack.enter_context(ServerThread(recorder.app)).url
        yield recorders


@pytest.fixture(scope="module")
def client(
    recorder: Recorder,
    replicas: list[Recorder],
    tiny_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OpenAI]:
    far = {"kind": "openai", "base_url": f"{recorder.url}/v1", "model": "tiny"}
    fleet = {"kind": "openai", "base_urls": [f"{r.url}/v1" for r in replicas], "model": "tiny"}
    params = {"trigger": "always", "draft": 0}
    catalog = {
        "backends": {
            "tiny": {"kind": "transformers", "model": str(tiny_folder), "threads": 1},
            "far": far,
            "far-user": {**far, "session_header": "X-User-ID"},
            "fleet": fleet,
        },
        "models": {
            alias: {
                "policy": "collab",
                "backends": {"small": "tiny", "large": large},
                "params": params,
            }
            for alias, large in (("pair", "far"), ("pair-user", "far-user"), ("trio", "fleet"))
        },
    }
    path = write_catalog(tmp_path_factory.mktemp("routing"), catalog)
    with serve_gateway(path) as url:
        yield OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def answer(client: OpenAI, model: str, request_id: str) -> int:
    """Asks for one collab answer; the large model's tokens in it. Each request's prompt is
    its own: a cached answer would make no calls."""
    response = client.completions.create(
        model=model,
        prompt=f"{PROMPT} {request_id}:",
        max_tokens=4,
        temperature=0,
        extra_headers={"x-request-id": request_id},
    )
    report = response.model_extra["tandem"] if response.model_extra else {}
    return int(report["tokens"]["large"])


def test_every_call_of_a_session_carries_its_key_and_the_request_id(
    client: OpenAI, recorder: Recorder
) -> None:
    large = [answer(client, "pair", f"answer-{n}") for n in (1, 2)]
    keys = []
    for n, tokens in zip((1, 2), large, strict=True):
        calls = recorder.of(f"answer-{n}")
        assert tokens >= 3
        assert len(calls) >= tokens  # one call per large token at least (span 1, no drafts)
        assert all(c.path == "/v1/completions" for c in calls)
        key = {c.headers.get("x-session-id") for c in calls}
        assert len(key) == 1
        assert None not in key
        keys.append(key.pop())
    assert keys[0] != keys[1]


def test_the_session_header_is_the_backends_setting(client: OpenAI, recorder: Recorder) -> None:
    assert answer(client, "pair-user", "answer-user") >= 3
    calls = recorder.of("answer-user")
    assert len({c.headers.get("x-user-id") for c in calls}) == 1
    assert calls[0].headers.get("x-user-id")
    assert not any("x-session-id" in c.headers for c in calls)


def test_each_answer_stays_on_one_replica_and_answers_spread(
    client: OpenAI, replicas: list[Recorder]
) -> None:
    """A backend over replicas picks one per token session by its key: every call of one
    answer lands on one replica (where its prefix is cached), and answers use several."""
    used = set()
    for n in range(8):  # keys are random: all 8 on one of 3 replicas has odds of 1 in 2187
        assert answer(client, "trio", f"replicated-{n}") >= 3
        places = {i for i, r in enumerate(replicas) if r.of(f"replicated-{n}")}
        assert len(places) == 1
        used |= places
    assert len(used) >= 2


@pytest.mark.parametrize("header", ["x-request-id", "Authorization", "x session", ""])
def test_a_session_header_the_gateway_sets_or_no_name_is_refused(header: str) -> None:
    with pytest.raises(ValidationError):
        OpenAIBackendConfig(base_url="http://127.0.0.1:1/v1", model="m", session_header=header)
