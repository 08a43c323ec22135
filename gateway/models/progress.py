"""A progress bar on stderr for one-time preparation (tqdm when installed, else silence)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, s: str) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, s: str) -> None:
        return None


@contextmanager
def progress(total: int, description: str, unit: str = "step") -> Iterator[Bar]:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the runtimes; preparation without it still works
        yield _Silent()
        return
    with tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "B") as bar:
        yield bar
