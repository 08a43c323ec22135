"""scripts/get-helm.sh: the helm binary comes from the user's cache once it is there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.deploy.conftest import ROOT, run_helm

SCRIPT = ROOT / "scripts" / "get-helm.sh"


def pinned_version() -> str:
    match = re.search(r"^HELM_VERSION=(v[\d.]+)$", SCRIPT.read_text(), re.M)
    assert match
    return match.group(1)


def test_the_fetched_helm_is_the_pinned_version_in_the_user_cache(helm: str) -> None:
    path = Path(helm)
    assert path.parent.name == f"helm-{pinned_version()}"
    assert not path.is_relative_to(ROOT), "tools live in the user's cache, not in the repository"
    version = run_helm(helm, "version", "--short")
    assert version.stdout.startswith(pinned_version())


def test_present_binary_is_reused_without_fetching(tmp_path: Path) -> None:
    cached = tmp_path / f"helm-{pinned_version()}" / "helm"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        # A python that cannot run proves nothing is downloaded.
        env={**os.environ, "TANDEM_TOOLS_DIR": str(tmp_path), "PYTHON": "/nonexistent/python"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(cached)
    assert result.stderr == ""


def test_a_failed_fetch_fails_loudly_and_leaves_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "TANDEM_TOOLS_DIR": str(tmp_path), "PYTHON": "/nonexistent/python"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []
