"""A remote large model's vocabulary, verified at start-up: another Tandem serving the tiny
SmolLM2-tokenizer model stands for vLLM's server (same `/v1/completions` echo of token ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from gateway.api.routing import build_router
from gateway.core.config import Catalog, CatalogError
from gateway.models import prepare
from tests.tiny import tiny_model


@pytest.fixture(scope="module")
def gemma_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model on Gemma-3's tokenizer: a vocabulary other than SmolLM2's."""
    folder = tmp_path_factory.mktemp("tiny-gemma-vocab")
    tiny_model(folder, Path(prepare("gemma3-270m").location), seed=0)
    return folder


def collab_catalog(small_model: str, remote_url: str) -> Catalog:
    raw: dict[str, Any] = {
        "backends": {
            "small": {"kind": "transformers", "model": small_model, "threads": 1},
            "remote": {"kind": "openai", "base_url": f"{remote_url}/v1", "model": "tiny"},
        },
        "models": {"pair": {"policy": "collab", "backends": {"small": "small", "large": "remote"}}},
    }
    return Catalog.model_validate(raw)


async def started_check(catalog: Catalog) -> None:
    router = build_router(catalog, "catalog.yaml")
    try:
        for backend in router.backends.values():
            await backend.start()
        await router.check_started()
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
