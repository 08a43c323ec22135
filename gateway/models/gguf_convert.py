"""GGUF -> a Hugging Face folder of dequantised fp32 safetensors plus the tokenizer.

fp32 keeps the dequantised weights exact; runtimes cast to bf16 at load time if asked.
Needs torch, transformers, gguf and accelerate (the `transformers` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.models.errors import ModelError
from gateway.models.progress import Bar


def convert_gguf(gguf: Path, out: Path, bar: Bar) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError(
            f"preparing a GGUF model needs the Python package '{exc.name}': "
            "pip install 'tandem-gateway[transformers]'  (or `make install`)"
        ) from None
    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise ModelError(f"'{gguf.name}' could not be read as a model: {exc}") from None
    bar.update(1)
    bar.set_postfix_str("save folder")
    # the dequantised weights are plain tensors now; saving must not record the GGUF quantizer
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    bar.update(1)
