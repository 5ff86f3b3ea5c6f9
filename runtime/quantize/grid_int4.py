"""Weight-only quantization of a loaded model by module replacement (gpt-fast's `quantize.py`).

Batch-1 decode reads every weight once per token, so fewer bytes per weight is more tokens per
second. `quantize_int8(model)` swaps each `nn.Linear` for `Int8Linear` (int8 weight, one scale per
output row, symmetric); `quantize_int4(model)` for `Int4Linear` (4-bit, asymmetric, one bf16
scale and zero per group of `group_size` inputs, packed for PyTorch's tinygemm kernels). The
embedding table stays in floating point: a token reads one row of it, not the whole table.
`quantize_float32_int4(model)` is different in kind: it keeps float32 activations and stores
weights that are 4-bit already (a Q4_0/Q4_1 GGUF) as their codes (`GridInt4Linear`), exactly, so
the model answers as in float32 from a quarter of the bytes (the CPU default where it applies).

Kernels: on CPU `aten._weight_int8pack_mm` / `_weight_int4pack_mm_for_cpu` (AVX-512 where the
CPU has it); on CUDA, batch-1 int8 goes through the Triton GEMV of `gemv.py` (one read of
each int8 weight; `linear(x, w.to(x.dtype)) * scales` was measured slower than bf16 there, since
it writes a widened copy of the weight), prompts of up to 64 tokens through the Triton matmul of
`int8_matmul.py` (the same one read), and longer inputs use that dequantize-then-matmul path;
int4 is `_weight_int4pack_mm`.
Quantization happens on the device the weights already live on and never changes the
activation dtype, so the rest of the model runs unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import grid_int4_cpu, int8_matmul
from ..errors import DeviceError
from ..kernels.gemv import available as gemv_available
from ..kernels.gemv import dependent_launch
from ..kernels.gemv import gemv

INT4_GROUP_SIZES = (32, 64, 128, 256)


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
            # Batch-1 decode on CUDA: read each int8 weight once (see gemv.py).
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
                # A short prefill: read each int8 weight once (see int8_matmul.py).
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
        return _output(y, shape, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int4 group_size={self.group_size}")


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


def _output(y: torch.Tensor, shape: torch.Size, out_features: int, bias: torch.Tensor | None) -> torch.Tensor:
    """Rows [M, N] of a linear back to the input's leading shape, bias added."""
    y = y.reshape(*shape[:-1], out_features)
    return y if bias is None else y + bias


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
        return _output(y, shape, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"4-bit grid codes, group_size={self.group_size}")


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module | None]) -> int:
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


def _untie_output(model: nn.Module) -> None:
    """Give a tied output head (`output is None`: logits = x @ tok_embeddings.weight.T) its own
    `nn.Linear` over the same tensor, so it is quantized like every other matmul. The embedding
    table itself stays in floating point for lookups; the quantized head is a second, smaller
    copy (SmolLM2: the head is a fifth of all weight bytes read per token)."""
    if getattr(model, "output", "absent") is None and hasattr(model, "tok_embeddings"):
        weight = model.tok_embeddings.weight
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        head.weight = weight
        model.output = head


@torch.no_grad()
def quantize_int8(model: nn.Module) -> nn.Module:
    """Swap every `nn.Linear` of `model` (the output head included) for `Int8Linear` in place."""
    _untie_output(model)
    _replace_linears(model, Int8Linear.from_linear)
    return model


@torch.no_grad()
def quantize_int4(
    model: nn.Module, group_size: int = 32, *, float32_head: bool = False, rescore: bool = False
) -> nn.Module:
    """Swap every `nn.Linear` whose shape the int4 kernels take for `Int4Linear`; others stay.
    With `float32_head`, the output head becomes a `Float32Head` instead; with `rescore`, the
    int4 head's top logits are recomputed in float32 (`RescoredHead`; tied heads only)."""
    if group_size not in INT4_GROUP_SIZES:
        raise DeviceError(f"int4 group size must be one of {INT4_GROUP_SIZES}, not {group_size}.")
    _untie_output(model)
    if float32_head and isinstance(getattr(model, "output", None), nn.Linear):
        model.output = Float32Head(model.output.weight, model.output.bias)
    _replace_linears(
        model,
        lambda lin: Int4Linear.from_linear(lin, group_size)
        if Int4Linear.supports(lin, group_size) else None,
    )
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    if rescore and tied and isinstance(getattr(model, "output", None), Int4Linear):
        model.output = RescoredHead(model.output, model.tok_embeddings.weight)
    return model


@torch.no_grad()
def quantize_float32_int4(model: nn.Module, group_size: int = 32) -> bool:
    """Keep float32 activations; store every linear whose weights are on a 4-bit grid as its codes
    (`GridInt4Linear`). A tied or off-grid output head becomes an int4 head (bfloat16 kernel) whose
    top-8 logits are recomputed in float32 from the float32 weights (`RescoredHead`). Returns False
    and leaves the model unchanged when some linear of the layers is not on the grid."""
    body = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear) and child is not getattr(model, "output", None)]
    made = [GridInt4Linear.from_linear(lin, group_size) for _, _, lin in body]
    if not body or any(m is None for m in made):
        return False
    for (parent, name, _), new in zip(body, made):
        setattr(parent, name, new)
    _untie_output(model)
    head = model.output
    exact_head = GridInt4Linear.from_linear(head, group_size) if isinstance(head, nn.Linear) else None
    if exact_head is not None:
        model.output = exact_head
    elif isinstance(head, nn.Linear) and head.bias is None and Int4Linear.supports(head, group_size):
        fast = nn.Linear(head.in_features, head.out_features, bias=False, device="meta")
        fast.weight = nn.Parameter(head.weight.detach().bfloat16(), requires_grad=False)
        model.output = RescoredHead(Int4Linear.from_linear(fast, group_size), head.weight.detach(),
                                    head_dtype=torch.bfloat16)
    return True


def quantize(model: nn.Module, mode: str) -> nn.Module:
    """Apply a weight-only scheme by name: "int8", "int4" (group 32), "int4-g<N>", or
    "int4-f32head" (int4 with a float32 output head), "int4-rescored" (int4 head whose top-8
    logits are recomputed in float32), "float32-int4" (float32 activations, weights that are
    4-bit already kept as their codes: the CPU default where the model allows it)."""
    if mode == "int8":
        return quantize_int8(model)
    if mode == "int4-f32head":
        return quantize_int4(model, 32, float32_head=True)
    if mode == "int4-rescored":
        return quantize_int4(model, 32, rescore=True)
    if mode == "float32-int4":
        if not quantize_float32_int4(model):
            raise DeviceError("float32-int4 needs weights that are 4-bit already (a Q4_0/Q4_1 GGUF); "
                              "use int4 or float32 for this model.")
        return model
    if mode == "int4" or mode.startswith("int4-g"):
        group = 32 if mode == "int4" else int(mode.removeprefix("int4-g"))
        return quantize_int4(model, group)
    raise DeviceError(f"unknown quantization {mode!r}; use int8, int4 or int4-g<32|64|128|256>.")


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
