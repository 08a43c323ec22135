"""A SHA-256 fed with a request's values as they are, field by field, rather than with a JSON
text of the whole request: a 4 MiB prompt is hashed in 64 KiB slices, never copied into a
second large string.

Each value goes in tagged with its kind and framed by its length, so two values hash alike
exactly when they are equal as data: `["ab", "c"]` and `["a", "bc"]` differ, as do `1`, `1.0`,
`True` and `"1"`. Mappings are fed in key order, so the digest does not depend on the order a
client wrote them in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel

SLICE = 64 * 1024  # characters encoded at a time
SHORT = 1024  # a string up to this long goes in a batch of scalars


@cache
def _declared(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(sorted(model.model_fields))


class Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def add(self, value: Any) -> Digest:
        update = self._hash.update
        if value is None or isinstance(value, bool):
            update(b"N" if value is None else b"T" if value else b"F")
        elif isinstance(value, str):
            self._text(value)
        elif isinstance(value, int | float):
            text = repr(value).encode()
            update((b"i" if isinstance(value, int) else b"f") + b"%d:" % len(text) + text)
        elif isinstance(value, BaseModel):
            self.model(value)
        elif isinstance(value, Mapping):
            update(b"{%d:" % len(value))
            for key in sorted(value, key=str):
                self.add(str(key)).add(value[key])
        elif isinstance(value, list | tuple):
            update(b"[%d:" % len(value))
            for item in value:
                self.add(item)
        else:  # nothing else comes out of a validated request; a repr is still stable
            self._text(f"{type(value).__name__}:{value!r}")
        return self

    def model(self, model: BaseModel, exclude: Collection[str] = ()) -> Digest:
        """Every field, set or defaulted, and every extra field, by name. Short scalars go in
        by the batch as one `repr` (unambiguous for them, and a C loop rather than a Python
        one); a batch is flushed at `SLICE` characters, so no copy grows past that."""
        extra = model.model_extra
        names = _declared(type(model))
        if extra:
            names = tuple(sorted((*names, *extra)))
        batch: list[tuple[str, Any]] = []
        size = 0
        for name in names:
            if name in exclude:
                continue
            value = getattr(model, name)
            if isinstance(value, str) and len(value) <= SHORT:
                size += len(value) + len(name)
                batch.append((name, value))
            elif value is None or isinstance(value, bool | int | float):
                size += len(name)
                batch.append((name, value))
            else:
                self._flush(batch)
                size = 0
                self._text(name)
                self.add(value)
            if size > SLICE:
                self._flush(batch)
                size = 0
        self._flush(batch)
        return self

    def _flush(self, batch: list[tuple[str, Any]]) -> None:
        if batch:
            self._text(repr(batch))
            batch.clear()

    def _text(self, text: str) -> None:
        update = self._hash.update
        update(b"s%d:" % len(text))
        for start in range(0, len(text), SLICE):
            # surrogatepass: a request built in Python may hold a lone surrogate, which UTF-8
            # refuses (JSON parsing refuses it before)
            update(text[start : start + SLICE].encode("utf-8", "surrogatepass"))
