"""A Tandem on loopback serving the default catalog (real models), as `make run` does, for the
tests that drive it the way a person would: a browser on the playground, a terminal chat."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.core.config import Settings
from gateway.models import prepare
from gateway.server.app import create_app
from loadtests.fake_upstream import ServerThread

# a prompt and settings under which SmolLM2 writes some tokens and Gemma-3 steps in on others
# (entropy above 0.8 nats: about a third of the tokens of a short answer here)
QUESTION = "What is the capital of France? Answer in one sentence."
# both models write under this setting: with the `qa` rendering Gemma-3 answers " Paris" at
# once, and at a lower threshold SmolLM2 then ends the answer, one token long
MIXED = {"trigger": "entropy", "threshold": 1.5}


@pytest.fixture(scope="session")
def default_gateway() -> Iterator[str]:
    """The default catalog's base URL (without `/v1`)."""
    for model in ("smollm2-135m", "gemma3-270m"):
        prepare(model)  # once per machine, minutes; the server's start-up then takes seconds
    # No prefix pool: some tests compare two runs of one request, and on llama.cpp (where
    # `kind: local` runs when installed) pooled sequences move a request's cells in the shared
    # KV cache, which moves its numbers (tests/models/conftest.py says more)
    no_pool = {"prefix_cache": 0}
    settings = Settings(backends={"smollm2": no_pool, "gemma3": no_pool})
    with ServerThread(create_app(settings)) as server:
        yield server.url
