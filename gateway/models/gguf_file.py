"""The GGUF file a model source names, for runtimes that read GGUF themselves (llama.cpp).

No conversion: a `.gguf` path is used as it is; a packaged model is the file inside its package,
or, when its packages carry it in parts (Gemma-3-270M), the parts joined once into
`TANDEM_HOME/models/<slug>.gguf` (under the same lock and rename scheme as prepared folders).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gateway.models.errors import ModelError
from gateway.models.prepare import locked, tandem_home
from gateway.models.sources import PACKAGED, Source, resolve


def gguf_file(ref: str, *, home: Path | None = None) -> Path:
    """The GGUF file behind `ref`; `ModelError` when `ref` names no GGUF."""
    source = resolve(ref)
    if source.kind == "gguf":
        assert source.path is not None
        return source.path
    if source.kind != "packaged":
        known = ", ".join(sorted(PACKAGED))
        raise ModelError(
            f"model '{ref}' is a {source.kind}, but llama.cpp serves GGUF files: give a .gguf "
            f"file or a packaged model ({known})"
        )
    return packaged_gguf(source, home or tandem_home())


def packaged_gguf(source: Source, home: Path) -> Path:
    assert source.packaged is not None
    target = home / "models" / f"{source.slug()}.gguf"
    if target.is_file():
        return target
    with locked(home / "locks" / f"{target.name}.lock"):
        if target.is_file():  # another process joined it while we waited
            return target
        scratch_root = home / "tmp"
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=scratch_root))
        try:
            found = source.packaged.locate(scratch)
            if not found.is_relative_to(scratch):
                return found  # the package carries the file whole: serve it from there
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
