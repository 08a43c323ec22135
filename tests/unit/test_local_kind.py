"""`kind: local`: which runtime it picks on which machine, and what it accepts.

The machine and what is importable are injected, so every platform's choice is checked here;
only the real machine's own answer depends on what this environment has installed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from gateway.api.routing import build_router
from gateway.backends import build_backend
from gateway.backends.local_kind import Machine, installed, local_kind, this_machine
from gateway.core.config import BackendSpec, CatalogError, Settings, load_catalog

MAC = Machine("Darwin", "arm64")
INTEL_MAC = Machine("Darwin", "x86_64")
LINUX = Machine("Linux", "x86_64")
LINUX_ARM = Machine("Linux", "aarch64")
GPU = Machine("Linux", "x86_64", nvidia=True)
EVERYTHING = {"mlx_lm", "llama_cpp"}
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


@pytest.mark.parametrize(
    ("machine", "modules", "kind"),
    [
        (MAC, EVERYTHING, "mlx"),
        (MAC, {"mlx_lm"}, "mlx"),
        (MAC, {"llama_cpp"}, "llamacpp"),  # mlx-lm uninstalled: the next best
        (MAC, set(), "transformers"),
        (INTEL_MAC, EVERYTHING, "llamacpp"),  # MLX needs Apple silicon
        (LINUX, EVERYTHING, "llamacpp"),  # mlx[cpu] on Linux is slower than torch
        (LINUX, {"mlx_lm"}, "transformers"),
        (LINUX, set(), "transformers"),
        (LINUX_ARM, {"llama_cpp"}, "llamacpp"),
        (GPU, EVERYTHING, "transformers"),  # torch on CUDA; the llama.cpp build is CPU-only
    ],
)
def test_local_picks_the_best_runtime_the_machine_has(
    machine: Machine, modules: set[str], kind: str
) -> None:
    asked: list[str] = []

    def importable(module: str) -> bool:
        asked.append(module)
        return module in modules

    assert local_kind(machine, importable) == kind
    assert set(asked) <= EVERYTHING


def test_this_machine_and_installed_read_the_real_ones() -> None:
    import platform

    machine = this_machine()
    assert (machine.system, machine.arch) == (platform.system(), platform.machine())
    assert installed("yaml")
    assert not installed("tandem_no_such_module")
    expected = "llamacpp" if installed("llama_cpp") and not machine.nvidia else "transformers"
    if machine.apple_silicon and installed("mlx_lm"):
        expected = "mlx"
    assert local_kind() == expected


@pytest.mark.parametrize("kind", ["llamacpp", "transformers", "mlx"])
def test_a_local_backend_is_built_as_the_picked_kind(kind: str) -> None:
    spec = BackendSpec(kind="local", model="smollm2-135m", prefix_cache=2)
    backend = build_backend("small", spec, "catalog.yaml", pick_local=lambda: kind)
    assert backend.kind == kind
    assert backend.config.model == "smollm2-135m"
    assert backend.config.prefix_cache == 2


def test_local_takes_only_the_settings_every_local_kind_shares() -> None:
    # `threads` is llama.cpp's and torch's, not mlx's: a catalog that sets it names its kind
    spec = BackendSpec(kind="local", model="smollm2-135m", threads=2)
    with pytest.raises(CatalogError) as error:
        build_backend("small", spec, "catalog.yaml", pick_local=lambda: "llamacpp")
    assert error.value.key == "backends.small.threads"
    # other tests may register kinds of their own: `local` is among the known ones, in order
    with pytest.raises(CatalogError, match=r"'lokal'; known: echo, .*llamacpp, local, mlx"):
        build_backend("small", BackendSpec(kind="lokal"), "catalog.yaml")


def requirements(group: str | None) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(spec) for spec in specs]


def installs(group: str | None, system: str, arch: str) -> set[str]:
    """The packages a group brings on a platform, as pip evaluates its markers."""
    sys_platform = {"Darwin": "darwin", "Linux": "linux"}[system]
    environment = {
        **default_environment(),
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": arch,
    }
    return {
        r.name for r in requirements(group) if r.marker is None or r.marker.evaluate(environment)
    }


def test_make_install_brings_mlx_on_apple_silicon_only() -> None:
    # `make install` is the base install plus the `transformers` extra
    for group in (None, "transformers"):
        assert "llama-cpp-python" not in installs(group, "Darwin", "arm64")
        assert "llama-cpp-python" not in installs(group, "Linux", "x86_64")
    assert {"mlx", "mlx-lm"} <= installs(None, "Darwin", "arm64")
    for system, arch in [("Darwin", "x86_64"), ("Linux", "x86_64"), ("Linux", "aarch64")]:
        assert not {"mlx", "mlx-lm", "mlx-cpu"} & installs(None, system, arch)
    # llama.cpp comes only through its own extra, built with safe flags by `make llamacpp`
    assert installs("llamacpp", "Linux", "x86_64") == {"llama-cpp-python"}


def test_the_default_catalog_runs_its_models_where_local_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = build_router(load_catalog(Settings()), str(Settings().catalog_path()))
    kinds = {name: router.backends[name].kind for name in ("smollm2", "gemma3")}
    assert kinds == {"smollm2": local_kind(), "gemma3": local_kind()}
    # transformers stays one environment variable away
    monkeypatch.setenv("TANDEM_BACKENDS__SMOLLM2__KIND", "transformers")
    router = build_router(load_catalog(Settings()), str(Settings().catalog_path()))
    assert router.backends["smollm2"].kind == "transformers"
    assert router.backends["gemma3"].kind == local_kind()
