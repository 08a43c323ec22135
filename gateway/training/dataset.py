"""The rows file: JSON lines, a header then one record per prompt; resumable.

```
{"format": "tandem-router-rows", "version": 1, "pair": {"small": "vocab-…", "large": "vocab-…"},
 "top_k": 8, "max_tokens": 16, "source": "bigbench:qa_wikidata"}
{"prompt": "bigbench:qa_wikidata:17", "answer": " Spain.", "correct": false,
 "rows": [{"position": 0, "entropy": 2.1, "top_logprobs": […], "hidden": […], "token": 6147,
           "diverge": 1, "critical": 0}, …]}
```
A record is written whole and flushed when its prompt is done, so an interrupted run loses at
most the prompt it was on; a later run with the same file skips the prompts it holds (a torn
last line is dropped). A file collected for another pair or setup is refused, never mixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.training.collect import Record

FORMAT = "tandem-router-rows"
VERSION = 1


class DatasetError(ValueError):
    """A rows file that cannot be used."""


@dataclass(frozen=True)
class Header:
    pair: dict[str, str]
    top_k: int
    max_tokens: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def same_setup(self, other: Header) -> bool:
        return (self.pair, self.top_k, self.max_tokens) == (
            other.pair,
            other.top_k,
            other.max_tokens,
        )


def read(path: Path) -> tuple[Header, list[dict[str, Any]]]:
    """The header and the whole records of a rows file."""
    header, records, _ = _scan(path)
    return header, records


def _scan(path: Path) -> tuple[Header, list[dict[str, Any]], int]:
    """Header, records, and the byte length of the file's whole lines."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    lines, kept = list(_whole_lines(data)), 0
    if not lines:
        raise DatasetError(f"{path} has no header line")
    header = _header(lines[0][0], path)
    kept = lines[0][1]
    records = []
    for line, end in lines[1:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a torn record: the run was stopped while writing it
        kept = end
    return header, records, kept


def _whole_lines(data: bytes) -> Iterator[tuple[bytes, int]]:
    start = 0
    while (end := data.find(b"\n", start)) != -1:
        yield data[start:end], end + 1
        start = end + 1


def _header(line: bytes, path: Path) -> Header:
    try:
        raw = json.loads(line)
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise DatasetError(f"{path} is not a {FORMAT} file of version {VERSION}")
        return Header(dict(raw["pair"]), int(raw["top_k"]), int(raw["max_tokens"]), raw["source"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path} does not start with a rows header") from None


def prepare(path: Path, header: Header) -> set[str]:
    """Make `path` ready to take records for `header`; the prompts it already holds."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(header.to_json()) + "\n")
        return set()
    held, records, kept = _scan(path)
    if not held.same_setup(header):
        raise DatasetError(
            f"{path} was collected for another pair or setup ({held.pair}, top_k {held.top_k}, "
            f"max_tokens {held.max_tokens}): use another file"
        )
    with path.open("r+b") as handle:
        handle.truncate(kept)
    return {str(r["prompt"]) for r in records}


def record_line(record: Record) -> str:
    return json.dumps(asdict(record), separators=(",", ":")) + "\n"
