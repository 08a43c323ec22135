"""End-of-sequence ids: the tokenizer's, and those the model's generation config lists.

Llama-3-style models end a chat turn with an id (`<|eot_id|>`) that only `generation_config`
names; a backend that stopped at the tokenizer's `eos_token_id` alone would write past the turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def eos_ids(*values: Any) -> frozenset[int]:
    """The ids among `values`, each an id, a list of ids or None (the shapes both configs use)."""
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return frozenset(ids)


def generation_config_eos(folder: str | Path) -> Any:
    """`eos_token_id` of the folder's generation_config.json, or None without a readable one."""
    path = Path(folder) / "generation_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("eos_token_id") if isinstance(config, dict) else None
