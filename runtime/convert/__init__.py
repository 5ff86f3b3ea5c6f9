"""Converters from the formats models come in to the runtime's own checkpoint layout.

    convert_hf_dir   Hugging Face folder (safetensors shards or .bin, config, tokenizer)
    convert_gguf     llama.cpp GGUF file (dequantized; q/k permutation undone)
    convert_pth      gpt-fast / DirectML-sample model.pth (+ config.json beside it)

Each writes the checkpoint atomically through `runtime.checkpoint.write_checkpoint`.
"""

from __future__ import annotations

from .gguf import convert_gguf
from .hf import convert_hf_dir
from .pth import convert_pth

__all__ = ["convert_gguf", "convert_hf_dir", "convert_pth"]
