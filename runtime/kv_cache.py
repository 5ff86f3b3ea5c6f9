"""The static key/value cache each attention layer owns (gpt-fast's `KVCache`).

Preallocated once for `max_seq_length` positions, written in place at `input_pos`: shapes never
change between decode steps, which is what CUDA graphs (`torch.compile(mode="reduce-overhead")`)
need. Attention reads the whole buffer under a mask, so stale entries past the current position
(left by an earlier, longer sequence) are never seen; that is what makes prefix reuse a matter of
rewinding the position.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KVCache(nn.Module):
    def __init__(
        self,
        max_batch_size: int,
        max_seq_length: int,
        n_local_heads: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        shape = (max_batch_size, n_local_heads, max_seq_length, head_dim)  # [B, KVH, S, D]
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: Tensor, k_val: Tensor, v_val: Tensor) -> tuple[Tensor, Tensor]:
        """input_pos: [S]; k_val, v_val: [B, KVH, S, D]. Returns the full caches [B, KVH, S_max, D]."""
        k_out = self.k_cache
        v_out = self.v_cache
        k_out[:, :, input_pos] = k_val
        v_out[:, :, input_pos] = v_val
        return k_out, v_out
