"""One-time preparation of a model source into `TANDEM_HOME` (default `~/.cache/tandem`).

A GGUF (a file, or one carried by packages) becomes a folder in the Hugging Face layout that
transformers, mlx-lm and vLLM all load in about a second. The folder is built in a temporary
directory beside its final place and renamed into it, under a file lock: an interrupted start
leaves only a temporary directory (removed next time), and concurrent starts wait for the one
that prepares.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.models.errors import ModelError
from gateway.models.progress import progress
from gateway.models.sources import Source, check_gguf, resolve

FP32_BYTES = 4
#: headroom for the tokenizer, config files and filesystem slack
DISK_MARGIN = 64 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Prepared:
    """What a runtime loads: a local folder, or a hub id it fetches itself."""

    location: str
    parameters: int | None
    source: Source


def tandem_home() -> Path:
    if home := os.environ.get("TANDEM_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tandem"


def prepare(
    ref: str,
    *,
    home: Path | None = None,
    bytes_per_param: int = FP32_BYTES,
    max_memory_gb: float | None = None,
) -> Prepared:
    """Resolve `ref`, prepare it once if needed, and check it fits the memory limit."""
    source = resolve(ref)
    if source.kind == "hub":
        return Prepared(ref, None, source)
    if source.kind == "folder":
        assert source.path is not None
        params = folder_parameters(source.path)
        check_memory(ref, params, bytes_per_param, max_memory_gb)
        return Prepared(str(source.path), params, source)
    folder = prepared_folder(source, home or tandem_home(), bytes_per_param, max_memory_gb)
    return Prepared(str(folder), folder_parameters(folder), source)


def prepared_folder(
    source: Source, home: Path, bytes_per_param: int, max_memory_gb: float | None
) -> Path:
    target = home / "models" / source.slug()
    if target.is_dir():
        check_memory(source.ref, folder_parameters(target), bytes_per_param, max_memory_gb)
        return target
    with locked(home / "locks" / f"{target.name}.lock"):
        if target.is_dir():  # another process prepared it while we waited
            return target
        scratch_root = home / "tmp"
        scratch_root.mkdir(parents=True, exist_ok=True)
        for stale in scratch_root.glob(f"{target.name}.*"):  # left by an interrupted start
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=scratch_root))
        try:
            build(source, scratch, target, bytes_per_param, max_memory_gb)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def build(
    source: Source, scratch: Path, target: Path, bytes_per_param: int, max_memory_gb: float | None
) -> None:
    gguf = source.packaged.locate(scratch) if source.packaged else source.path
    assert gguf is not None
    params = check_gguf(gguf)
    check_memory(source.ref, params, bytes_per_param, max_memory_gb)
    check_disk(target.parent, params * FP32_BYTES + DISK_MARGIN)
    from gateway.models.gguf_convert import convert_gguf

    with progress(2, f"prepare {source.ref}") as bar:
        bar.set_postfix_str("dequantise GGUF")
        convert_gguf(gguf, scratch / "model", bar)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / "model", target)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_disk(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ModelError(
            f"not enough disk space in {folder} to prepare the model: "
            f"{needed / GIB:.2f} GiB needed, {free / GIB:.2f} GiB free "
            "(free some space or point TANDEM_HOME elsewhere)"
        )


def check_memory(
    ref: str, params: int | None, bytes_per_param: int, max_memory_gb: float | None
) -> None:
    if max_memory_gb is None or params is None:
        return
    needed = params * bytes_per_param / GIB
    if needed > max_memory_gb:
        raise ModelError(
            f"model '{ref}' needs about {needed:.2f} GiB for its weights, more than the configured "
            f"memory limit of {max_memory_gb:g} GiB (raise max_memory_gb or choose a smaller "
            "model or dtype)"
        )


def folder_parameters(folder: Path) -> int | None:
    """Parameters in a folder's safetensors files, read from their headers alone."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                n = 1
                for dim in tensor["shape"]:
                    n *= int(dim)
                total += n
    return total
