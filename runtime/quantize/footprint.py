"""How many bytes of weights one decode step reads: batch-1 decode speed follows it, and the
benchmarks divide it by a step's time to get the memory bandwidth a scheme reaches."""

from __future__ import annotations

from torch import nn


def weight_bytes(model: nn.Module) -> int:
    """Bytes one decode step reads from weights: the persistent state (quantized weights and
    scales included, KV cache and rope tables excluded) minus the embedding table, which a token
    reads one row of (gpt-fast's `model_size`). A tied output head is a full read, so it counts."""
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    tied = tied and getattr(model, "output", None) is None  # else the head has its own tensor
    total, seen = 0, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        if "tok_embeddings" in name and not tied:
            continue
        total += t.numel() * t.element_size()
    return total
