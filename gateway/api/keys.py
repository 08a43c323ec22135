"""API keys with a name, the aliases they may use and their own limits.

`TANDEM_API_KEYS_FILE` is either one key per line (`#` comments; each key may use every alias
at the global limits, and is named by its id, a digest prefix), or YAML:

```yaml
keys:
  - name: team-a              # in the access log line and the opt-in per-key metrics
    key: sk-team-a-...        # kept in memory as a SHA-256 digest only
    models: [echo, tandem-collab]   # omitted: every alias
    rpm: 60                   # omitted: TANDEM_RATE_LIMIT_RPM; 0: no limit for this key
    tpm: 100000               # omitted: TANDEM_RATE_LIMIT_TPM
```

A key asking for an alias it may not use gets the same 404 as for an alias that does not exist,
and `/v1/models` lists only its own: a tenant learns nothing of the others' models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.core.config import CatalogError, Settings, error_key

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes
    models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def key_id(self) -> str:
        """A digest prefix: the key's identity in caches and rate-limit buckets, safe to log."""
        return self.digest.hex()[:16]

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models

    @classmethod
    def plain(cls, key: str) -> ApiKey:
        """A key of the line format: every alias, the global limits, named by its id."""
        hashed = digest(key)
        return cls(hashed.hex()[:16], hashed)


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    key: str = Field(min_length=1, pattern=r"^\S+$")
    models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[KeyEntry] = Field(min_length=1)


def load_keys(settings: Settings, aliases: Iterable[str]) -> list[ApiKey]:
    """Every configured key; a structured file is checked against the catalog's aliases."""
    path = settings.api_keys_file
    structured = _structured(path) if path is not None else None
    if structured is None:
        return [ApiKey.plain(key) for key in settings.all_api_keys()]
    assert path is not None
    records = [ApiKey.plain(key) for key in settings.api_keys]
    return records + _records(structured, set(aliases), str(path))


def _structured(path: Path) -> dict[str, Any] | None:
    """The file's YAML when it is a mapping (the structured format), else None."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # the line format's reader reports what is wrong
    return data if isinstance(data, dict) else None


def _records(data: dict[str, Any], aliases: set[str], source: str) -> list[ApiKey]:
    try:
        parsed = KeysFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(source, error_key(first["loc"]), first["msg"]) from None
    records: list[ApiKey] = []
    for i, entry in enumerate(parsed.keys):
        unknown = sorted(set(entry.models or ()) - aliases)
        if unknown:
            raise CatalogError(source, f"keys.{i}.models", f"no alias named {unknown[0]!r}")
        if any(r.name == entry.name for r in records):
            raise CatalogError(source, f"keys.{i}.name", f"'{entry.name}' is used twice")
        models = None if entry.models is None else frozenset(entry.models)
        records.append(ApiKey(entry.name, digest(entry.key), models, entry.rpm, entry.tpm))
    if len({r.digest for r in records}) < len(records):
        raise CatalogError(source, "keys", "the same key is listed twice")
    return records
