"""Output heads that keep greedy decoding close to float32 when the rest of the model is not.

Greedy decoding picks the largest logit, so near-tied logits decide the output: these heads
compute the logits, or just the best few, in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Float32Head(nn.Module):
    """Output head computing logits in float32 from a float32 copy of its weight.

    In a bfloat16 model, bf16 logits have a resolution of ~0.1 at typical magnitudes, so greedy
    decoding flips between near-tied tokens; measured on SmolLM2 (benchmarks/cpu.py), a float32
    head is what keeps int4 as close to float32 as plain bfloat16 is. It costs one float32 read
    of the head per token."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight.detach().float(), persistent=True)
        self.register_buffer("bias", None if bias is None else bias.detach().float(), persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.weight, self.bias)  # [B, S, V] float32


class RescoredHead(nn.Module):
    """A fast (quantized) output head whose top-k logits are recomputed in float32.

    Greedy decoding only needs the order of the best few logits right. The quantized head gives
    all logits cheaply; the `k` best are then recomputed as float32 dot products with the
    floating-point embedding rows (a tied head's own table), a few thousand multiply-adds per
    token. Measured on SmolLM2: int4 head alone keeps 1 of 10 float32 continuations, a float32
    head 7 of 10 at 30% less speed; this aims for the second at the speed of the first."""

    def __init__(self, head: nn.Module, weight: torch.Tensor, k: int = 8, head_dtype: torch.dtype | None = None):
        super().__init__()
        self.head = head
        self.table = weight  # [V, D] floating point, shared with the embedding (not a copy)
        self.k = k
        self.head_dtype = head_dtype  # the head's activation dtype when it differs from the model's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x if self.head_dtype is None else x.to(self.head_dtype)).float()  # [B, S, V]
        top = logits.topk(self.k, dim=-1).indices  # [B, S, k]
        rows = self.table[top].float()  # [B, S, k, D]
        exact = torch.einsum("bsd,bskd->bsk", x.float(), rows)
        return logits.scatter(-1, top, exact)
