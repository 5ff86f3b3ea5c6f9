"""DirectML's fused kernels, used where torch-directml provides them (as the DirectML sample did).

`DirectMLOps.load()` looks up `torch_directml.rmsnorm`, `apply_rotary_position_emb` and
`multi_head_attention`; any that a wheel lacks stays `None` and the model uses its plain-PyTorch
code for that op, which is also the reference path on every other device. `DirectMLRMSNorm` and
`DirectMLAttention` are the model's modules with these ops in their forward
(`runtime/fast_paths.py` swaps them in). Signatures follow
torch-directml 0.2.5's `functions.py` as the sample calls them:

    rmsnorm(x_float32, weight_float32, eps) -> y
    apply_rotary_position_emb(q, k, cos, sin, min_position, seqlen, rotary_dim) -> (q, k)
        q, k [B, H, S, Dh]; cos, sin [1, 1, max_pos, rotary_dim]; positions min_position..+seqlen
    multi_head_attention(q, k, v, dim, n_head, past_k, past_v, mask) -> (y, past_k, past_v)
        q, k, v [B, S, H * Dh] (GQA heads expanded first); int32 mask [1, H, S_q, S_kv]

We pass no past (`None`) and give the kernel the valid part of our own static cache instead, so
the cache, prefix reuse and masking stay the same code on every device. Reading positions as host
ints syncs once per step, which DirectML (no CUDA graphs) can afford.

Not testable without Windows/WSL 2 and a DirectX 12 GPU; keep this file small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..model import Attention, RMSNorm, Rope


@dataclass(frozen=True)
class DirectMLOps:
    rmsnorm: Callable | None = None
    rotary: Callable | None = None
    attention: Callable | None = None

    @classmethod
    def load(cls) -> "DirectMLOps":
        import torch_directml

        return cls(
            rmsnorm=getattr(torch_directml, "rmsnorm", None),
            rotary=getattr(torch_directml, "apply_rotary_position_emb", None),
            attention=getattr(torch_directml, "multi_head_attention", None),
        )

    def rms_norm(self, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        return self.rmsnorm(x.float(), weight.float(), eps).type_as(x)

    def apply_rotary(self, q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, input_pos: Tensor):
        """q, k [B, H|KVH, S, Dh]; cos, sin: the model's full tables [S_max, rope_dim]."""
        start = int(input_pos[0])
        rope_dim = cos.shape[-1]
        return self.rotary(q, k, cos[None, None], sin[None, None], start, q.shape[2], rope_dim)

    def multi_head_attention(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, input_pos: Tensor) -> Tensor:
        """q [B, H, S, Dh]; k, v caches [B, H, S_max, Dh] (GQA already expanded);
        mask bool [1, 1, S, S_max]. Returns y [B, S, H * Dh]."""
        bsz, n_head, seqlen, head_dim = q.shape
        kv_len = int(input_pos[-1]) + 1
        k, v = k[:, :, :kv_len], v[:, :, :kv_len]
        q, k, v = (t.transpose(1, 2).reshape(bsz, -1, n_head * head_dim) for t in (q, k, v))
        mask = mask[..., :kv_len].expand(1, n_head, seqlen, kv_len).int()
        y, _, _ = self.attention(q, k, v, n_head * head_dim, n_head, None, None, mask)
        return y


class DirectMLRMSNorm(RMSNorm):
    """`RMSNorm` through `torch_directml.rmsnorm` (`ops`: a `DirectMLOps` that has it)."""

    ops: DirectMLOps

    def forward(self, x: Tensor) -> Tensor:
        return self.ops.rms_norm(x, self.weight, self.eps)


class DirectMLAttention(Attention):
    """`Attention` with DirectML's rotary and attention kernels, each where `ops` has it."""

    ops: DirectMLOps

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        q, k, v = self.heads(x)
        if self.ops.rotary is not None:
            q, k = self.ops.apply_rotary(q, k, rope.cos_table, rope.sin_table, input_pos)
        else:
            q, k = self.rotate(q, k, rope)
        k, v = self.kv_cache.update(input_pos, k, v)  # [B, KVH, S_max, Dh]
        if kv_len is not None:
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]
        if self.ops.attention is None:
            return self.wo(self.attend(q, k, v, mask))
        groups = self.n_head // self.n_local_heads
        if groups > 1:  # the kernel takes as many k/v heads as query heads
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        return self.wo(self.ops.multi_head_attention(q, k, v, mask, input_pos))
