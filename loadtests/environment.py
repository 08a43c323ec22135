"""What a results file must say about where and how it was measured (never a local path)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

from loadtests.services import REPO


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def tandem_revision() -> str:
    revision = _git("rev-parse", "--short", "HEAD")
    # The gateway is often being changed while it is measured: say so in the results.
    dirty = _git("status", "--porcelain", "--", "gateway")
    return f"{revision} + uncommitted changes in gateway/" if dirty else revision


def loadavg() -> str:
    """The 1/5/15-minute load averages: other work on a shared machine shows up here."""
    try:
        with open("/proc/loadavg") as source:
            return " ".join(source.read().split()[:3])
    except OSError:
        return "unknown"


def describe(args: argparse.Namespace) -> dict[str, Any]:
    """Called before the run: the revision is the one the started gateway loaded."""
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tandem": tandem_revision(),
        "litellm": _version("litellm"),
        "vllm_router": _version("vllm-router"),
        "aiohttp": _version("aiohttp"),
        "load_average_before": loadavg(),
        "load_average_after": None,  # filled in when the run ends
        "upstream": {"ttft_s": args.ttft, "itl_s": args.itl, "chunks": args.chunks},
        "timing": {"warmup_s": args.warmup, "measured_s": args.duration},
        "pinning": {"loadgen_and_upstream": args.client_cpus, "gateway": args.gateway_cpus},
    }
