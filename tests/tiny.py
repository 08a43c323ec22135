"""Tiny random-initialised Llama models on a real tokenizer, for fast session and policy tests."""

from __future__ import annotations

from pathlib import Path


def tiny_model(folder: Path, tokenizer_folder: Path, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    # a wide spread makes greedy choices unambiguous and gives entropies of 3-5.5 nats, so
    # thresholds in between fire sometimes
    config.initializer_range = 0.5
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
