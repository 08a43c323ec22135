"""Tiny random-initialised models on a real tokenizer, for fast session and policy tests: Llama,
and Gemma-3 with sliding-window layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: two layers of 64: milliseconds per token on a CPU
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def tiny_model(folder: Path, tokenizer_folder: Path, seed: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    save(folder, tokenizer_folder, seed, LlamaConfig, LlamaForCausalLM, tie_word_embeddings=True)


def tiny_sliding_model(folder: Path, tokenizer_folder: Path, seed: int, window: int) -> None:
    """Gemma-3's kind: a sliding-window layer of `window` tokens, then a full-attention one."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    layers = ["sliding_attention", "full_attention"]
    save(folder, tokenizer_folder, seed, Gemma3TextConfig, Gemma3ForCausalLM,
         head_dim=16, sliding_window=window, layer_types=layers, pad_token_id=0)  # fmt: skip


def save(
    folder: Path, tokenizer_folder: Path, seed: int, config_cls: Any, model_cls: Any, **extra: Any
) -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(seed)
    config = config_cls(vocab_size=len(tokenizer), **SHAPE, **extra)
    # a wide spread makes greedy choices unambiguous and gives entropies of 3-5.5 nats, so
    # thresholds in between fire sometimes
    config.initializer_range = 0.5
    model_cls(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
