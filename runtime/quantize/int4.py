"""int4 weight-only quantization for PyTorch's tinygemm kernels: 4-bit, asymmetric, one scale and
zero per group of `group_size` inputs (bfloat16 on CUDA, the weight's dtype on CPU).

Kernels: `aten._weight_int4pack_mm_for_cpu` on CPU (AVX-512 where the CPU has it),
`aten._weight_int4pack_mm` on CUDA (bfloat16 activations only).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DeviceError
from .heads import Float32Head, RescoredHead
from .linears import linear_output, replace_linears, untie_output

INT4_GROUP_SIZES = (32, 64, 128, 256)


def _group_qparams(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group asymmetric 4-bit parameters in tinygemm's convention: w ~ (q - 8) * scale + zero."""
    groups = w.float().reshape(-1, group_size)  # [N * K/g, g]
    lo, hi = groups.amin(dim=1), groups.amax(dim=1)
    scales = ((hi - lo).clamp(min=1e-6) / 15.0).reshape(w.shape[0], -1)  # [N, K/g]
    zeros = (lo.reshape(w.shape[0], -1) + scales * 8.0)
    return scales, zeros


class Int4Linear(nn.Module):
    """4-bit grouped weight in tinygemm's packed layout; bf16 activations on CUDA, any on CPU."""

    def __init__(self, packed, scales_and_zeros, bias, in_features, out_features, group_size):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("weight", packed, persistent=True)
        self.register_buffer("scales_and_zeros", scales_and_zeros, persistent=True)
        self.register_buffer("bias", bias, persistent=True)

    @staticmethod
    def supports(linear: nn.Linear, group_size: int) -> bool:
        out_features, in_features = linear.weight.shape
        return in_features % group_size == 0 and in_features % 32 == 0 and out_features % 8 == 0

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 32) -> "Int4Linear":
        w = linear.weight.detach()
        n, k = w.shape
        on_cpu = w.device.type == "cpu"
        sz_dtype = w.dtype if on_cpu else torch.bfloat16
        scales, zeros = _group_qparams(w, group_size)
        # Codes are chosen against the scales and zeros as stored (rounded to sz_dtype): the
        # kernel reconstructs with those, and weights that were 4-bit already (a Q4_1 GGUF)
        # then come back exactly.
        scales, zeros = scales.to(sz_dtype).float(), zeros.to(sz_dtype).float()
        lo = zeros - scales * 8.0
        q = ((w.float().reshape(n, -1, group_size) - lo[..., None]) / scales[..., None])
        q = q.round().clamp_(0, 15).to(torch.int32).reshape(n, k)
        if on_cpu:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        else:
            q_uint8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
            packed = torch.ops.aten._convert_weight_to_int4pack(q_uint8, 8)
        # [K/g, N, 2]: scale and zero of each group of each output row.
        sz = torch.stack([scales, zeros], dim=2).transpose(0, 1).contiguous().to(sz_dtype)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(packed, sz, bias, k, n, group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.weight.device.type == "cpu":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2, self.weight, self.group_size, self.scales_and_zeros.to(x.dtype)
            )
        else:
            y = torch.ops.aten._weight_int4pack_mm(
                x2.to(torch.bfloat16), self.weight, self.group_size, self.scales_and_zeros
            ).to(x.dtype)
        return linear_output(y, shape, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int4 group_size={self.group_size}")


@torch.no_grad()
def quantize_int4(
    model: nn.Module, group_size: int = 32, *, float32_head: bool = False, rescore: bool = False
) -> nn.Module:
    """Swap every `nn.Linear` whose shape the int4 kernels take for `Int4Linear`; others stay.
    With `float32_head`, the output head becomes a `Float32Head` instead; with `rescore`, the
    int4 head's top logits are recomputed in float32 (`RescoredHead`; tied heads only)."""
    if group_size not in INT4_GROUP_SIZES:
        raise DeviceError(f"int4 group size must be one of {INT4_GROUP_SIZES}, not {group_size}.")
    untie_output(model)
    if float32_head and isinstance(getattr(model, "output", None), nn.Linear):
        model.output = Float32Head(model.output.weight, model.output.bias)
    replace_linears(
        model,
        lambda lin: Int4Linear.from_linear(lin, group_size)
        if Int4Linear.supports(lin, group_size) else None,
    )
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    if rescore and tied and isinstance(getattr(model, "output", None), Int4Linear):
        model.output = RescoredHead(model.output, model.tok_embeddings.weight)
    return model
