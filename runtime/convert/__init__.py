"""Converters from the formats models come in to the runtime's own checkpoint layout.

    convert_hf_dir   Hugging Face folder (safetensors shards or .bin, config, tokenizer)
    convert_gguf     llama.cpp GGUF file (dequantized; q/k permutation undone)
    convert_pth      gpt-fast / DirectML-sample model.pth (+ config.json beside it)

Each converter file holds only its format; the steps they share (config, tokenizer files beside
the weights, the free-disk check, the atomic write through `runtime.checkpoint.write_checkpoint`)
are in `steps.py`. This package depends on the checkpoint format alone and never imports
`runtime.store`, which calls it.
"""

from __future__ import annotations

from .gguf import convert_gguf
from .hf import convert_hf_dir
from .pth import convert_pth

__all__ = ["convert_gguf", "convert_hf_dir", "convert_pth"]
