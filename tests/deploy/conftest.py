"""Fixtures for the deployment artefacts: a helm binary, rendered charts, parsed files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "tandem"
ALL_ON_VALUES = CHART / "ci" / "all-on-values.yaml"
COLLAB_VALUES = CHART / "ci" / "collab-values.yaml"
# the defaults, plus the one value the chart needs to serve without API keys
NO_KEYS_VALUES = CHART / "ci" / "no-keys-values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
RELEASE = "rel"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.29.0", "1.37.0")


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (the dev extra puts it there)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: run `make install-dev` (it is in the dev extra)"
    return str(path)


@pytest.fixture(scope="session")
def helm() -> str:
    """scripts/get-helm.sh fetches helm into the user's cache once, then only prints its path."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "get-helm.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), path
    return path


@dataclass
class Rendered:
    text: str
    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            doc
            for doc in self.all(kind)
            if component is None
            or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
        return found[0]

    def gateway(self) -> dict[str, Any]:
        return self.one("Deployment", "gateway")

    def gateway_container(self) -> dict[str, Any]:
        (container,) = self.gateway()["spec"]["template"]["spec"]["containers"]
        return container


Render = Callable[..., Rendered]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """`helm template` with values files and --set pairs; fails the test when helm does."""

    def _render(*values: Path, kube: str = KUBE_VERSIONS[-1], **sets: object) -> Rendered:
        args = ["template", RELEASE, str(CHART), "--kube-version", kube]
        for path in values:
            args += ["--values", str(path)]
        for key, value in sets.items():
            if isinstance(value, str):
                args += ["--set-string", f"{key}={value}"]
            else:
                args += ["--set", f"{key}={json.dumps(value)}"]
        result = run_helm(helm, *args)
        assert result.returncode == 0, result.stderr
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return Rendered(result.stdout, docs)

    return _render


@pytest.fixture(scope="session")
def default(render: Render) -> Rendered:
    return render(NO_KEYS_VALUES)


@pytest.fixture(scope="session")
def all_on(render: Render) -> Rendered:
    return render(ALL_ON_VALUES)


@pytest.fixture(scope="session")
def collab(render: Render) -> Rendered:
    return render(COLLAB_VALUES)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway reads TANDEM_* settings; keep the developer's own out of the checks."""
    for name in list(os.environ):
        if name.startswith("TANDEM_"):
            monkeypatch.delenv(name)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
