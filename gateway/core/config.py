"""Settings from the environment and the model catalog from one YAML file.

The catalog declares backends (a kind and that kind's settings) and model aliases (a policy, its
parameters, and which backend plays which role). Environment variables override both:
`TANDEM_BACKENDS__<name>__<key>` and `TANDEM_MODELS__<alias>__<key>` (names in lower case), so
a deployment can point a catalog at another server without editing the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.core.bounds import AliasLimits, RequestLimits
from gateway.core.overrides import OverrideRule

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "default_catalog.yaml"


class CatalogError(Exception):
    """A catalog that cannot be served: names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class BackendSpec(BaseModel):
    """One backend: its kind picks the class; the other keys are that class's settings."""

    model_config = ConfigDict(extra="allow")
    kind: str

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AliasSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str
    backends: dict[str, str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    # the `tandem` keys a client may set on this alias (gateway/core/overrides.py)
    overrides: dict[str, OverrideRule] = Field(default_factory=dict)
    description: str | None = None
    limits: AliasLimits = Field(default_factory=AliasLimits)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: dict[str, BackendSpec] = Field(default_factory=dict)
    models: dict[str, AliasSpec] = Field(default_factory=dict)
    # learned-trigger routers by name; a path relative to the catalog's own directory
    routers: dict[str, Path] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Process settings; `TANDEM_*` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="TANDEM_", env_nested_delimiter="__", extra="ignore"
    )

    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: str = "info"
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    metrics_require_auth: bool = False
    # tandem_key_tokens_total by key name: one series per key and source, so opt-in
    metrics_per_key: bool = False
    # origins whose pages may call the API from a browser (README, "CORS"); empty: none
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    # Bounded work per request: limits (gateway/core/bounds.py), load shedding, the body guard
    limits: RequestLimits = Field(default_factory=RequestLimits)
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="model calls one worker serves at once; past it a 503 with Retry-After "
        "(0: no limit)",
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time to receive a request's whole body; then a 408"
    )
    max_json_items: int = Field(
        default=50_000,
        ge=1,
        description="JSON items (strings with keys, comma-separated items) in a request body "
        "over 64 KiB, counted before it is validated (3-6 us of validation each)",
    )
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    otlp_endpoint: str | None = None
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    # The older generations of Python's collector run this often; 0 leaves Python's own schedule
    # (gateway/observability/collector.py says why)
    gc_interval_seconds: float = Field(default=60.0, ge=0)
    # Response cache and rate limits (README: "Response cache and rate limits")
    redis_url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://")
    redis_timeout_ms: float = Field(default=50.0, gt=0)
    redis_prefix: str = "tandem:"
    cache_enabled: bool = True
    cache_ttl_seconds: float = Field(default=300.0, gt=0)
    cache_scope: Literal["key", "global"] = "key"
    cache_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    cache_max_entry_bytes: int = Field(default=1024 * 1024, ge=1)
    rate_limit_rpm: int = Field(default=0, ge=0)
    rate_limit_tpm: int = Field(default=0, ge=0)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    def catalog_path(self) -> Path:
        return self.config or DEFAULT_CATALOG

    def all_api_keys(self) -> list[str]:
        """Keys from the environment plus one per line of the key file (`#` comments). A key
        file without a key stops the start: its owner meant to ask for keys, and an open API
        is not what a mistyped or empty Secret should give."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            path = str(self.api_keys_file)
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                raise CatalogError(path, "api_keys_file", exc.strerror or "") from None
            stripped = (line.strip() for line in lines)
            found = [line for line in stripped if line and not line.startswith("#")]
            if not found:
                raise CatalogError(path, "api_keys_file", "holds no key (blank or comments only)")
            keys += found
        return keys


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(str(path), "(file)", exc.strerror or str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise CatalogError(str(path), where, f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(
            str(path), "(root)", "a catalog is a mapping with 'backends' and 'models'"
        )
    return data


def error_key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def load_catalog(settings: Settings) -> Catalog:
    """Read, merge and validate the catalog's shape; semantic checks happen when it is built."""
    path = settings.catalog_path()
    data = _read_yaml(path)
    overrides = {"backends": settings.backends, "models": settings.models}
    data = deep_merge(data, {key: value for key, value in overrides.items() if value})
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(str(path), error_key(first["loc"]), first["msg"]) from None


def settings_from_env(**overrides: Any) -> Settings:
    """Settings from the environment; CLI flags arrive as overrides."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)


def export_to_env(settings: Settings) -> None:
    """Hand CLI choices to worker processes, which rebuild their settings from the environment."""
    if settings.config is not None:
        os.environ["TANDEM_CONFIG"] = str(settings.config)
    os.environ["TANDEM_LOG_LEVEL"] = settings.log_level
