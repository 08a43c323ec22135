"""What the docs may name, read from the code: targets, subcommands, settings, kinds, metrics."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.backends import backends
from gateway.backends.local import LocalBackendConfig
from gateway.backends.local_kind import LOCAL
from gateway.core.config import Catalog, Settings
from gateway.observability.metrics import Metrics
from gateway.policies import policies
from gateway.server import cli

ROOT = Path(__file__).resolve().parents[2]

#: `TANDEM_*` variables read outside `Settings`, each with the file that reads it
OTHER_VARIABLES = {
    "TANDEM_HOME": "gateway/models/prepare.py",
    "TANDEM_URL": "gateway/chat/cli.py",
    "TANDEM_API_KEY": "gateway/chat/cli.py",
    "TANDEM_VLLM_PYTHON": "tests/models/test_vllm_serve.py",
}
#: the catalog overrides `TANDEM_BACKENDS__<name>__<key>` and `TANDEM_MODELS__<alias>__<key>`
OVERRIDE_PREFIXES = ("TANDEM_BACKENDS__", "TANDEM_MODELS__")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("", "_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@cache
def make_targets() -> frozenset[str]:
    """Targets of the Makefile: a line `name:` or `name other:` outside a recipe (not `.PHONY`)."""
    text = (ROOT / "Makefile").read_text()
    heads = re.findall(r"^([\w.-]+(?: [\w.-]+)*)\s*:(?!=)", text, flags=re.M)
    return frozenset(name for head in heads for name in head.split() if not name.startswith("."))


@cache
def is_tandem_command(name: str) -> bool:
    """Whether the `tandem` command's own parser takes `name` as a subcommand.

    argparse answers `--help` of a known subcommand with exit status 0 and refuses an unknown
    one with 2, so the parser is asked rather than copied.
    """
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            cli.parse_args([name, "--help"])
        except SystemExit as exc:
            return exc.code == 0
    return False


@cache
def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def is_variable(name: str) -> bool:
    """`TANDEM_<field>` of Settings, a catalog override, or a variable another module reads."""
    if name.startswith(OVERRIDE_PREFIXES):
        return True
    if name in OTHER_VARIABLES:
        return f'"{name}"' in (ROOT / OTHER_VARIABLES[name]).read_text()
    return is_setting(name)


def is_setting(name: str) -> bool:
    """`TANDEM_<FIELD>`, or `TANDEM_<FIELD>__<KEY>` for a key of a field that is a model."""
    field, _, key = name.removeprefix("TANDEM_").lower().partition("__")
    info = Settings.model_fields.get(field)
    if not name.startswith("TANDEM_") or info is None:
        return False
    model = info.annotation
    nested = isinstance(model, type) and issubclass(model, BaseModel)
    return not key or (nested and key in model.model_fields)


@cache
def metric_names() -> frozenset[str]:
    """Every series name the metrics of a fresh app export, suffixes included."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return frozenset(names)


def policy_params(policy: str) -> frozenset[str]:
    return frozenset(policies.get(policy).Params.model_fields)


def catalog_problems(data: Any) -> list[str]:
    """What Tandem would refuse in a catalog: its shape, each backend's settings against its
    kind, each alias's policy and parameters, and the backends an alias names."""
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        return [f"catalog: {_first(exc)}"]
    problems = []
    for name, spec in catalog.backends.items():
        try:
            # `kind: local` takes what every local kind shares (gateway/backends/local_kind.py)
            config = LocalBackendConfig if spec.kind == LOCAL else backends.get(spec.kind).Config
        except LookupError as exc:
            problems.append(f"backends.{name}.kind: {exc}")
            continue
        problems += _refused(config, spec.settings(), f"backends.{name}")
    for alias, entry in catalog.models.items():
        try:
            params = policies.get(entry.policy).Params
        except LookupError as exc:
            problems.append(f"models.{alias}.policy: {exc}")
            continue
        problems += _refused(params, entry.params, f"models.{alias}.params")
        if catalog.backends:
            problems += [
                f"models.{alias}.backends.{role}: no backend named {backend!r}"
                for role, backend in entry.backends.items()
                if backend not in catalog.backends
            ]
    return problems


def _refused(model: type[BaseModel], data: dict[str, Any], where: str) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [f"{where}: {_first(exc)}"]
    return []


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
