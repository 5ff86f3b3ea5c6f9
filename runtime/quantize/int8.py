"""int8 weight-only quantization: one int8 weight per input, one scale per output row, symmetric.

Kernels: on CPU `aten._weight_int8pack_mm` (AVX-512 where the CPU has it); on CUDA, batch-1
decode goes through the Triton GEMV of `kernels/gemv.py` (one read of each int8 weight;
`linear(x, w.to(x.dtype)) * scales` was measured slower than bf16 there, since it writes a
widened copy of the weight), prompts of up to 64 tokens through the Triton matmul of
`kernels/int8_matmul.py` (the same one read), and longer inputs use that dequantize-then-matmul
path. Importing this module registers the `quill::int8_widened_linear` operator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import int8_matmul
from ..kernels.gemv import available as gemv_available
from ..kernels.gemv import dependent_launch
from ..kernels.gemv import gemv
from .linears import replace_linears, untie_output


def _int8_kernel_available(device: torch.device) -> bool:
    return device.type == "cpu" and hasattr(torch.ops.aten, "_weight_int8pack_mm")


@torch.library.custom_op("quill::int8_widened_linear", mutates_args=())
def _int8_widened_linear(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ (int8 weight [N, K] widened to x's dtype).T * scales [N], in eager PyTorch."""
    return F.linear(x, weight.to(x.dtype)) * scales.to(x.dtype)


@_int8_widened_linear.register_fake
def _(x, weight, scales):
    return x.new_empty(x.shape[0], weight.shape[0])


class Int8Linear(nn.Module):
    """y = x @ (int8 weight * per-row scale).T + bias. Weight [out, in] int8, scales [out]."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self.register_buffer("weight", weight, persistent=True)
        self.register_buffer("scales", scales, persistent=True)
        self.register_buffer("bias", bias, persistent=True)
        self.use_int8pack = _int8_kernel_available(weight.device)
        self.use_int8_gemv = gemv_available(weight.device) and weight.device.type == "cuda"
        if self.use_int8_gemv:
            dependent_launch(weight.device)  # decided now, not inside code torch.compile traces

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        w = linear.weight.detach()
        # Scales in float32 so rows with tiny weights keep their precision; stored in the
        # activation dtype because the kernels take them that way.
        amax = w.float().abs().amax(dim=1).clamp(min=1e-8)
        scales = amax / 127.0
        q = torch.round(w.float() / scales[:, None]).clamp_(-128, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(q, scales.to(w.dtype), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_int8_gemv and x.numel() == self.in_features:
            # Batch-1 decode on CUDA: read each int8 weight once (see kernels/gemv.py).
            y = gemv(x.reshape(-1), self.weight, self.scales).reshape(*x.shape[:-1], self.out_features)
        elif self.use_int8pack and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
            shape = x.shape
            y = torch.ops.aten._weight_int8pack_mm(
                x.reshape(-1, shape[-1]), self.weight, self.scales.to(x.dtype)
            ).reshape(*shape[:-1], self.out_features)
        elif x.is_cuda:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            if int8_matmul.supports(rows, self.weight):
                # A short prefill: read each int8 weight once (see kernels/int8_matmul.py).
                y = torch.ops.quill.int8_matmul(rows, self.weight, self.scales)
            else:
                # A long one: widen the weight, then a cuBLAS matmul, kept out of Inductor's
                # reach (it fused the widening into a loop that took 29 s for 2,048 tokens of
                # Llama-2-7B).
                y = torch.ops.quill.int8_widened_linear(rows, self.weight, self.scales)
            y = y.reshape(*shape[:-1], self.out_features)
        else:
            y = F.linear(x, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y

    def dequantize(self) -> torch.Tensor:
        return self.weight.float() * self.scales.float()[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


@torch.no_grad()
def quantize_int8(model: nn.Module) -> nn.Module:
    """Swap every `nn.Linear` of `model` (the output head included) for `Int8Linear` in place."""
    untie_output(model)
    replace_linears(model, Int8Linear.from_linear)
    return model
