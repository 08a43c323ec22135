"""`kind: local`: the in-process runtime that serves a model best on this machine.

Chosen once, when the catalog is built, from what the machine is and what is installed:

1. `mlx` on Apple silicon when mlx-lm is installed (`make install` brings it there);
2. `transformers` where an NVIDIA driver is loaded: torch runs the model on CUDA, while the
   llama.cpp that `make llamacpp` builds is CPU-only;
3. `llamacpp` when llama-cpp-python is installed (`make llamacpp`): on a CPU it decodes 3-4x as
   fast as `transformers` in a third of the memory (docs/models.md);
4. `transformers` otherwise (torch on CPU; `make install` always brings it).

Installed means importable; nothing is imported to find out, so choosing costs no start-up time.
A catalog that wants one runtime whatever the machine names its kind instead.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOCAL = "local"
#: present while an NVIDIA kernel driver is loaded (Linux)
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system(): "Darwin", "Linux", ...
    arch: str  # platform.machine(): "arm64", "x86_64", ...
    nvidia: bool = False

    @property
    def apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.arch == "arm64"


def this_machine() -> Machine:
    return Machine(platform.system(), platform.machine(), NVIDIA_DRIVER.exists())


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def local_kind(
    machine: Machine | None = None, importable: Callable[[str], bool] = installed
) -> str:
    """The backend kind `kind: local` stands for on `machine` (default: this one)."""
    machine = machine or this_machine()
    if machine.apple_silicon and importable("mlx_lm"):
        return "mlx"
    if machine.nvidia:
        return "transformers"
    if importable("llama_cpp"):
        return "llamacpp"
    return "transformers"
