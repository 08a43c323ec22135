"""End-of-sequence ids from the tokenizer and the generation config (gateway/backends/eos.py)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.backends.eos import eos_ids, generation_config_eos


def test_a_llama3_style_config_adds_its_end_of_turn_ids(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})
    )
    assert eos_ids(generation_config_eos(tmp_path), 128001) == {128001, 128008, 128009}


def test_a_single_id_and_a_missing_or_broken_config(tmp_path: Path) -> None:
    assert generation_config_eos(tmp_path) is None  # no file
    (tmp_path / "generation_config.json").write_text("{not json")
    assert generation_config_eos(tmp_path) is None
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    assert eos_ids(generation_config_eos(tmp_path), 2) == {2}
    assert eos_ids(None, None) == frozenset()
    assert eos_ids([1, True, "x"], False) == {1}  # only real ids count
