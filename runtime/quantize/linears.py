"""What every weight-only scheme shares: swapping a model's `nn.Linear` modules, giving a tied
output head a linear of its own, and shaping a replacement's output as `nn.Linear` would."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module | None]) -> int:
    """Replace every `nn.Linear` below `model` with `make(linear)` (None keeps it); count swaps."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                new = make(child)
                if new is not None:
                    setattr(parent, name, new)
                    count += 1
    return count


def untie_output(model: nn.Module) -> None:
    """Give a tied output head (`output is None`: logits = x @ tok_embeddings.weight.T) its own
    `nn.Linear` over the same tensor, so it is quantized like every other matmul. The embedding
    table itself stays in floating point for lookups; the quantized head is a second, smaller
    copy (SmolLM2: the head is a fifth of all weight bytes read per token)."""
    if getattr(model, "output", "absent") is None and hasattr(model, "tok_embeddings"):
        weight = model.tok_embeddings.weight
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        head.weight = weight
        model.output = head


def linear_output(
    y: torch.Tensor, shape: torch.Size, out_features: int, bias: torch.Tensor | None
) -> torch.Tensor:
    """Rows [M, N] of a linear back to the input's leading shape, bias added."""
    y = y.reshape(*shape[:-1], out_features)
    return y if bias is None else y + bias
