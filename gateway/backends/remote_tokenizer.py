"""The tokenizer of a model served elsewhere, loaded here so that text can cross the seam.

A collab large model behind an OpenAI-compatible server with another vocabulary than the small
model's: the catalog names its tokenizer (`tokenizer:` on the `openai` backend: a packaged model
name, a model folder or a hub id), the gateway loads it, checks it against the server
(`gateway/backends/vocab_probe.py`), and the policy hands text over at the seam, re-encoded with
it exactly as between two in-process models. transformers is imported only here, when a catalog
names one.
"""

from __future__ import annotations

from typing import cast

from gateway.core.tokens import HFTokenizer
from gateway.models import prepare


def load_tokenizer(source: str) -> HFTokenizer:
    """The tokenizer of `source`; a packaged model is prepared once (as its backend would)."""
    from transformers import AutoTokenizer

    from gateway.models.sources import PACKAGED

    location = prepare(source).location if source in PACKAGED else source
    return cast(HFTokenizer, AutoTokenizer.from_pretrained(location))
