"""Several rows files read as one training set: one pair and setup, every source named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.training.cli import read_all
from gateway.training.collect import Record, Row
from gateway.training.dataset import DatasetError, Header, prepare, record_line

PAIR = {"small": "vocab-a", "large": "vocab-b"}


def rows_file(path: Path, source: str, prompts: list[str], top_k: int = 8) -> Path:
    prepare(path, Header(PAIR, top_k, 8, source))
    with path.open("a") as out:
        for prompt in prompts:
            row = Row(0, 0.5, [-0.1] * top_k, None, 7, 1)
            out.write(record_line(Record(prompt, " x", None, [row])))
    return path


def test_files_of_one_setup_read_as_one_with_every_source(tmp_path: Path) -> None:
    a = rows_file(tmp_path / "a.jsonl", "bigbench:operators", ["p1", "p2"])
    b = rows_file(tmp_path / "b.jsonl", "bigbench:qa_wikidata", ["p3"])
    again = rows_file(tmp_path / "c.jsonl", "bigbench:operators", ["p4"])
    header, records = read_all([a, b, again])
    assert header.source == "bigbench:operators, bigbench:qa_wikidata"
    assert [r["prompt"] for r in records] == ["p1", "p2", "p3", "p4"]


def test_a_file_of_another_setup_is_refused(tmp_path: Path) -> None:
    a = rows_file(tmp_path / "a.jsonl", "bigbench:operators", ["p1"])
    other = rows_file(tmp_path / "b.jsonl", "bigbench:operators", ["p2"], top_k=4)
    with pytest.raises(DatasetError, match="another pair or setup"):
        read_all([a, other])
