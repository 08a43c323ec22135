"""A remote large model's vocabulary, verified at start-up: another Tandem serving the tiny
SmolLM2-tokenizer model stands for vLLM's server (same `/v1/completions` echo of token ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.api.routing import build_router
from gateway.core.config import Catalog, CatalogError
from gateway.core.events import Delta, Report
from gateway.core.protocol import CompletionRequest
from gateway.models import prepare
from tests.tiny import tiny_model

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gemma_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model on Gemma-3's tokenizer: a vocabulary other than SmolLM2's."""
    folder = tmp_path_factory.mktemp("tiny-gemma-vocab")
    tiny_model(folder, Path(prepare("gemma3-270m").location), seed=0)
    return folder


def collab_catalog(
    small_model: str, remote_url: str, served: str = "tiny", tokenizer: str | None = None
) -> Catalog:
    remote: dict[str, Any] = {"kind": "openai", "base_url": f"{remote_url}/v1", "model": served}
    if tokenizer is not None:
        remote["tokenizer"] = tokenizer
    raw: dict[str, Any] = {
        "backends": {
            "small": {"kind": "transformers", "model": small_model, "threads": 1},
            "remote": remote,
        },
        "models": {"pair": {"policy": "collab", "backends": {"small": "small", "large": "remote"}}},
    }
    return Catalog.model_validate(raw)


async def started_check(catalog: Catalog, prompt: str | None = None) -> str:
    """Start the catalog's backends as the app does, check it, and (given a prompt) return
    the text `pair` writes with the large model writing every token."""
    router = build_router(catalog, "catalog.yaml")
    try:
        for backend in router.backends.values():
            await backend.start()
        await router.check_started()
        if prompt is None:
            return ""
        policy = router.routes["pair"].policy
        params = policy.parse_params({"trigger": "always", "draft": 0})
        request = CompletionRequest(model="pair", prompt=prompt, max_tokens=8, temperature=0)
        events = [event async for event in policy.complete(request, params)]
        report = next(e for e in events if isinstance(e, Report))
        assert report.extra["vocabulary"] == "text"
        return "".join(e.text for e in events if isinstance(e, Delta))
    finally:
        for backend in router.backends.values():
            await backend.aclose()


async def test_a_remote_of_the_same_vocabulary_passes(
    local_gateway: tuple[str, FastAPI], tiny_folder: Path
) -> None:
    await started_check(collab_catalog(str(tiny_folder), local_gateway[0]))


async def test_a_remote_of_another_vocabulary_is_refused_at_start(
    local_gateway: tuple[str, FastAPI], gemma_tiny: Path
) -> None:
    with pytest.raises(CatalogError) as refused:
        await started_check(collab_catalog(str(gemma_tiny), local_gateway[0]))
    assert refused.value.key == "models.pair.backends"
    assert "backend 'remote' tokenises" in str(refused.value)
    assert "vocabularies differ" in str(refused.value)


async def test_a_remote_that_cannot_be_asked_degrades_rather_than_refuses(
    tiny_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import closed_port

    await started_check(collab_catalog(str(tiny_folder), f"http://127.0.0.1:{closed_port()}"))
    assert "could not be asked for its vocabulary" in caplog.text


async def test_a_remote_of_another_vocabulary_with_its_tokenizer_named_exchanges_text(
    local_gateway: tuple[str, FastAPI], gemma_tiny: Path, smollm2_folder: Path
) -> None:
    """A small model on Gemma's vocabulary, SmolLM2 behind HTTP with its tokenizer named: the
    large model writing every token gives exactly what the server writes alone."""
    url = local_gateway[0]
    catalog = collab_catalog(str(gemma_tiny), url, "smollm2", tokenizer=str(smollm2_folder))
    text = await started_check(catalog, PROMPT)
    async with httpx.AsyncClient(base_url=url) as client:
        alone = await client.post(
            "/v1/completions",
            json={"model": "smollm2", "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
        )
    assert text == alone.json()["choices"][0]["text"]
    assert text.strip()


async def test_a_named_tokenizer_that_is_not_the_served_models_is_refused(
    local_gateway: tuple[str, FastAPI], gemma_tiny: Path
) -> None:
    catalog = collab_catalog(str(gemma_tiny), local_gateway[0], "smollm2", str(gemma_tiny))
    with pytest.raises(CatalogError, match="is not the served model's"):
        await started_check(catalog)
