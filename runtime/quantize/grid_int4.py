"""The 4-bit grid scheme: weights that are 4-bit already (a Q4_0/Q4_1 GGUF) found on their grid
and kept as their codes, exactly, in `GridInt4Linear`.

`four_bit_grid` recovers each group's codes, scale and zero from the dequantized float tensors
and refuses any tensor it cannot give back bit for bit; `GridInt4Linear` stores the codes two to a
byte and multiplies in float32, through the C++ kernel of `kernels/grid_int4_cpu.py` for short
inputs. `float32_int4.py` applies it to a whole model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import grid_int4_cpu
from .linears import linear_output


def four_bit_grid(weight: torch.Tensor, group_size: int = 32):
    """(codes [N, K] uint8, scales [N, K/g], zeros [N, K/g]) with `codes * scale + zero` equal to
    `weight` bit for bit in float32, or None when some group of `group_size` inputs is not on a
    4-bit grid. A Q4_0/Q4_1 GGUF stores w = d * q + m per block of 32; its dequantized tensors
    give back a grid step of d (or a multiple, when some levels are unused).

    Most groups span all 16 levels (Q4_1 maps a block's minimum to 0 and its maximum to 15), so
    the step span/15 is tried first for every group; only the groups it does not reproduce
    exactly look for their smallest level gap (a sort, the slow part: seconds for a 135M model)."""
    n, k = weight.shape
    if k % group_size:
        return None
    if n > 256 and four_bit_grid(weight[:64], group_size) is None:
        return None  # refused on a sample of rows, without converting the whole tensor
    groups = weight.detach().float().reshape(n, -1, group_size)  # [N, G, g]
    target = groups
    # min and max are exact in float32; their difference and the step need double precision
    lo = groups.amin(-1).double()
    span = groups.amax(-1).double() - lo
    codes, scales, ok = _grid_at(groups, target, lo, span, torch.full_like(span, 15.0))
    if not ok.all():
        rest = ~ok
        # An off-grid tensor (a Q6_K or Q8_0 head, say) fails nearly every group: try a few of
        # them first, so it is refused in milliseconds rather than sorted whole.
        sample = rest.nonzero()[:256].unbind(-1)
        if not _gap_grid(groups[sample], target[sample], lo[sample], span[sample])[2].all():
            return None
        codes2, scales2, ok2 = _gap_grid(groups[rest], target[rest], lo[rest], span[rest])
        if not ok2.all():
            return None
        codes[rest], scales[rest] = codes2, scales2
    return codes.reshape(n, k), scales, lo.float()


def _gap_grid(groups, target, lo, span):
    """`_grid_at` with each group's own number of levels, from its smallest gap between values."""
    gaps = groups.double().sort(dim=-1).values.diff(dim=-1)  # [B, g-1]
    gap = torch.where(gaps > span[..., None] * 1e-3, gaps, torch.inf).amin(-1)  # smallest level step
    levels = (span / gap).round().clamp(1, 15)
    return _grid_at(groups, target, lo, span, levels)


def _grid_at(groups, target, lo, span, levels):
    """Codes (uint8), float32 scales and, per group, whether `codes * scale + lo` gives `target`
    back bit for bit, for a grid of `levels` steps over each group's span."""
    step = torch.where(span > 0, span / levels, torch.ones_like(span))
    scales, zeros = step.float(), lo.float()
    # float32 is enough for the codes: an error far below half a step rounds away, and the
    # check below is exact
    codes = ((groups - zeros[..., None]) / scales[..., None]).round_().clamp_(0, 15).to(torch.uint8)
    deq = codes.float() * scales[..., None] + zeros[..., None]  # as `_dequantize_codes` computes it
    return codes, scales, (deq == target).all(-1)


def _dequantize_codes(codes, scales, zeros, group_size: int) -> torch.Tensor:
    n, k = codes.shape
    w = codes.view(n, -1, group_size).float() * scales[..., None] + zeros[..., None]  # [N, G, g]
    return w.view(n, k)


def _pack_nibbles(codes: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N, K] codes 0..15 -> [N, K/2] bytes: per group, code j | code (j + g/2) << 4."""
    n, k = codes.shape
    halves = codes.view(n, -1, 2, group_size // 2)
    return (halves[:, :, 0] | (halves[:, :, 1] << 4)).reshape(n, k // 2)


def _unpack_nibbles(packed: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N, K/2] bytes -> [N, G, g] codes (the inverse of `_pack_nibbles`)."""
    p = packed.view(packed.shape[0], -1, group_size // 2)
    return torch.cat([p & 15, p >> 4], dim=-1)


def _materialized(x: torch.Tensor) -> torch.Tensor:
    """`x` as a buffer of its own inside a compiled graph. Without it Inductor recomputes the
    producer of a matrix-vector product's input (a norm, say) once per output row."""
    force = getattr(torch.ops.prims, "inductor_force_stride_order", None)
    return x if force is None else force(x, x.stride())


class GridInt4Linear(nn.Module):
    """A linear whose weights are 4-bit already (a Q4_0/Q4_1 GGUF), kept as 4-bit codes, two to
    a byte, plus a float32 scale and zero per group: an eighth of float32's bytes, the same values.

    Activations stay float32. Up to `grid_int4_cpu.MAX_ROWS_OF_X` rows of input (decode, a
    few typed tokens, a draft's verification; eager or compiled) go through the C++ kernel,
    which reads the packed codes and dequantizes them inside the product; longer inputs (the
    prefill of a whole file) dequantize the matrix once and use the float32 matmul, so they give
    float32's results exactly.

    Packing: byte j of a group holds code j in its low nibble and code j + g/2 in its high one
    (GGUF's own order), so each half unpacks to a contiguous run of inputs."""

    def __init__(self, codes, scales, zeros, bias, group_size: int = 32):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.group_size = group_size
        self.register_buffer("packed", _pack_nibbles(codes, group_size), persistent=True)  # [N, K/2] uint8
        self.register_buffer("scales", scales, persistent=True)  # [N, K/g] float32
        self.register_buffer("zeros", zeros, persistent=True)  # [N, K/g] float32
        self.register_buffer("bias", bias, persistent=True)
        # Short inputs go through a C++ kernel where it builds (`grid_int4_cpu.py`: several
        # times Inductor's speed for this loop); else a PyTorch expression.
        self.use_kernel = (codes.device.type == "cpu"
                           and grid_int4_cpu.supports(self.out_features, self.in_features, group_size)
                           and grid_int4_cpu.available())

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 32) -> "GridInt4Linear | None":
        """None when the weights are not on a 4-bit grid (then this would not be exact)."""
        grid = four_bit_grid(linear.weight, group_size)
        if grid is None:
            return None
        bias = None if linear.bias is None else linear.bias.detach().float()
        return cls(*grid, bias, group_size)

    def codes(self) -> torch.Tensor:
        """[N, K] uint8 codes 0..15."""
        return _unpack_nibbles(self.packed, self.group_size).reshape(self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        return _dequantize_codes(self.codes(), self.scales, self.zeros, self.group_size)

    def _decode_row(self, x: torch.Tensor) -> torch.Tensor:
        """x [1, K] -> [1, N] in PyTorch ops, dequantizing inside the product (for torch.compile
        where the C++ kernel is unavailable)."""
        n, half = self.out_features, self.group_size // 2
        p = self.packed.view(n, -1, half)  # [N, G, g/2]
        xs = x.view(-1, 2, half)  # [G, 2, g/2]: each group's first and second half
        s, z = self.scales[..., None], self.zeros[..., None]  # [N, G, 1]
        lo = (p & 15).float() * s + z
        hi = (p >> 4).float() * s + z
        return (lo * xs[:, 0] + hi * xs[:, 1]).sum(dim=(-1, -2)).view(1, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if self.use_kernel and x2.shape[0] <= grid_int4_cpu.MAX_ROWS_OF_X and x2.dtype == torch.float32:
            y = torch.ops.quill.grid_int4_mm(x2, self.packed, self.scales, self.zeros)
        elif x2.shape[0] == 1 and torch.compiler.is_compiling():
            y = self._decode_row(_materialized(x2))
        else:  # the bias inside the matmul, as nn.Linear adds it: float32's rounding exactly
            return F.linear(x2, self.dequantize(), self.bias).reshape(*shape[:-1], self.out_features)
        return linear_output(y, shape, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"4-bit grid codes, group_size={self.group_size}")
