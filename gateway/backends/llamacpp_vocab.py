"""llama.cpp's own tokenizer in the Hugging Face shape `gateway.core.tokens` works with.

The vocabulary is the GGUF's (`tokenizer.ggml.tokens`), the very strings a Hugging Face
tokenizer converted from the same file holds, so both fingerprint alike. The chat template is
the GGUF's `tokenizer.chat_template`, rendered with Jinja the way transformers renders it.
Tokenising and detokenising only read llama.cpp's immutable vocabulary, which is safe from any
thread; forward passes stay on the backend's worker.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import llama_cpp as lc
from jinja2 import Template
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: llama.cpp's token attribute bit for control tokens (`LLAMA_TOKEN_ATTR_CONTROL`)
CONTROL = 8
SPACE = "\u2581"  # SentencePiece's visible space


class LlamaTokenizer:
    """Encode, decode, vocabulary and chat template of one loaded llama.cpp model."""

    def __init__(self, model: Any) -> None:
        self._vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        texts = [lc.llama_vocab_get_text(self._vocab, i) or b"" for i in range(self.n_vocab)]
        spm = lc.llama_vocab_type(self._vocab) == lc.LLAMA_VOCAB_TYPE_SPM
        self._ids = {vocab_text(t, spm): i for i, t in enumerate(texts)}
        template = lc.llama_model_chat_template(model, None)
        self.chat_template: str | None = template.decode() if template else None
        self._template: Template | None = None
        self.bos_token_id = int(lc.llama_vocab_bos(self._vocab))
        self.eos_token_id = int(lc.llama_vocab_eos(self._vocab))
        self.bos_token = self._text(self.bos_token_id)
        self.eos_token = self._text(self.eos_token_id)

    def _text(self, token: int) -> str:
        if not 0 <= token < self.n_vocab:
            return ""
        return (lc.llama_vocab_get_text(self._vocab, token) or b"").decode(errors="replace")

    def __len__(self) -> int:
        return self.n_vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def is_control(self, token: int) -> bool:
        return bool(lc.llama_vocab_get_attr(self._vocab, token) & CONTROL)

    def encode(self, text: str, add_special_tokens: bool = True, **_: Any) -> list[int]:
        """Token ids; special-token text in `text` becomes its special token, as in transformers."""
        data = text.encode()
        size = len(data) + 8
        while True:
            out = (lc.llama_token * size)()
            n = lc.llama_tokenize(self._vocab, data, len(data), out, size, add_special_tokens, True)
            if n >= 0:
                return list(out[:n])
            size = -n

    def decode(self, ids: Any, skip_special_tokens: bool = False, **_: Any) -> str:
        tokens = [int(i) for i in ([ids] if isinstance(ids, int) else ids)]
        if not tokens:
            return ""
        array = (lc.llama_token * len(tokens))(*tokens)
        size = 16 * len(tokens) + 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = lc.llama_detokenize(
                self._vocab, array, len(tokens), buffer, size, False, not skip_special_tokens
            )
            if n >= 0:
                return buffer.raw[:n].decode(errors="replace")
            size = -n

    def apply_chat_template(
        self,
        conversation: Sequence[dict[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        **kwargs: Any,
    ) -> Any:
        if not self.chat_template:
            raise ValueError("the GGUF carries no tokenizer.chat_template")
        if self._template is None:
            self._template = compile_template(self.chat_template)
        text = self._template.render(
            messages=list(conversation),
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **kwargs,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


def vocab_text(text: bytes, spm: bool) -> str:
    """A token's text as transformers' GGUF converter writes it: a SentencePiece vocabulary's
    user-defined whitespace tokens (Gemma's runs of spaces) come with `▁` for each space."""
    decoded = text.decode("utf-8", errors="replace")
    return decoded.replace(" ", SPACE) if spm else decoded


def raise_exception(message: str) -> None:
    raise ValueError(message)


def tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def compile_template(template: str) -> Template:
    """A chat template in the environment transformers renders it in."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
