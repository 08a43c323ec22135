"""Model pairs for the policy tests, loaded once per run.

`tiny_pair`: two random-initialised Llama models on SmolLM2's real tokenizer (same vocabulary,
different weights), milliseconds per token. `real_pair`: SmolLM2-135M and Gemma-3-270M, the
default catalog's two models, whose vocabularies differ, on transformers and on llama.cpp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.events import Delta, Event, Finish, Report, Usage
from gateway.core.protocol import ChatCompletionRequest
from gateway.models import prepare
from gateway.policies.collab import CollabPolicy
from tests.tiny import tiny_model

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


def started(backends: list[LocalBackend]) -> Iterator[list[LocalBackend]]:
    for backend in backends:
        asyncio.run(backend.start())
    try:
        yield backends
    finally:
        for backend in backends:
            asyncio.run(backend.aclose())


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    smollm2 = Path(prepare("smollm2-135m").location)
    folders = (tmp_path_factory.mktemp("tiny-small"), tmp_path_factory.mktemp("tiny-large"))
    for seed, folder in enumerate(folders):
        tiny_model(folder, smollm2, seed)
    return folders


@pytest.fixture(scope="session")
def tiny_pair(tiny_folders: tuple[Path, Path]) -> Iterator[list[LocalBackend]]:
    """small, large, and a second copy of small (drafts always agree with it)."""
    small, large = tiny_folders
    names = [("small", small), ("large", large), ("twin", small)]
    yield from started(
        [TransformersBackend(n, TransformersConfig(model=str(f), threads=1)) for n, f in names]
    )


@pytest.fixture(scope="session", params=["transformers", "llamacpp"])
def real_pair(request: pytest.FixtureRequest) -> Iterator[list[LocalBackend]]:
    """The pair on each CPU runtime the default catalog may pick (`kind: local`)."""
    models = [("smollm2", "smollm2-135m"), ("gemma3", "gemma3-270m")]
    if request.param == "transformers":
        yield from started(
            [TransformersBackend(n, TransformersConfig(model=m, threads=1)) for n, m in models]
        )
        return
    pytest.importorskip("llama_cpp", reason="`make llamacpp` builds and installs llama.cpp")
    from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig

    # no prefix pool: a pooled sequence lies elsewhere in llama.cpp's shared KV cache, and its
    # 8-bit activations make numbers depend on that (tests/models/conftest.py)
    yield from started(
        [LlamaCppBackend(n, LlamaCppConfig(model=m, threads=1, prefix_cache=0)) for n, m in models]
    )


class Outcome:
    """Everything a request produced, by kind."""

    def __init__(self, events: list[Event]) -> None:
        self.deltas = [e for e in events if isinstance(e, Delta)]
        self.finishes = [e for e in events if isinstance(e, Finish)]
        self.usage = next(e for e in events if isinstance(e, Usage))
        self.report = next(e for e in events if isinstance(e, Report))

    def text(self, index: int = 0) -> str:
        return "".join(d.text for d in self.deltas if d.index == index)

    @property
    def extra(self) -> dict[str, Any]:
        return self.report.extra


#: under pytest's own per-test timeout (120 s), so a large model that hangs still fails a test
STALL_DEADLINE_S = 60.0


def collab(small: Any, large: Any) -> CollabPolicy:
    return CollabPolicy("collab", {"small": small, "large": large})


async def run_collab(
    small: Any,
    large: Any,
    params: dict[str, Any] | None = None,
    policy: CollabPolicy | None = None,
    **request: Any,
) -> Outcome:
    policy = policy or collab(small, large)
    # past its deadline (10 s by default) an intervention falls back to the small model's token:
    # a shared machine that stalls for seconds would make a test of the texts a test of that
    # fallback; the tests of the deadline set their own
    params = {"deadline": STALL_DEADLINE_S, **(params or {})}
    body = {"model": "collab", "messages": QUESTION, "max_tokens": 16, "temperature": 0}
    body.update(request)
    chat = ChatCompletionRequest.model_validate(body)
    events = [e async for e in policy.chat(chat, policy.parse_params(params))]
    return Outcome(events)
