"""Triton matrix-vector products for batch-1 decode on CUDA: bf16/fp16 and int8 weight-only.

Decode at batch 1 reads every weight once per token, so a linear layer costs its bytes over the
memory bandwidth. Measured on an H100 (`benchmarks/gemv_probe.py`), cuBLAS reaches 2.5-2.7 TB/s
on Llama-2-7B's shapes against a read bandwidth of 2.9 TB/s, and the plain `w.to(bf16)` route
for int8 writes a widened copy of the weight (five bytes moved per weight instead of one).
These kernels stream each weight row block once, widen int8 in registers next to the multiply,
accumulate in float32 and apply the per-row scale at the end.

Block sizes are fixed per shape by `_config` (chosen from the sweep in `gemv_probe.py`), not
autotuned at start-up: tuning is what makes gpt-fast's first call take minutes. The kernels are
plain Triton, so `torch.compile(fullgraph=True)` and CUDA graphs capture them as user kernels;
on Hopper they launch as programmatic dependent launches through a custom op instead (see
`gemv`), which lets each one start reading its weights while the kernel before it finishes.
`gemv` also takes the fused steps of a decoder layer (RMSNorm or SwiGLU in front, bias and
residual behind) that `fused_decode.py` uses. `available()` is False without CUDA or Triton;
callers keep `F.linear` then. With `TRITON_INTERPRET=1` they also run on CPU tensors, which is
how the tests check them without a GPU.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

try:  # Triton ships with CUDA builds of PyTorch only.
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any failure to import means "no kernel"
    triton = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Inline PTX (the int8 widening) runs on NVIDIA GPUs only: not interpreted, not on ROCm.
NVIDIA_PTX = not INTERPRET and torch.version.hip is None


def available(device: torch.device) -> bool:
    """Whether the kernels can run on `device` (CUDA with Triton; any device in interpret mode)."""
    return triton is not None and (device.type == "cuda" or INTERPRET)


if triton is not None:

    @triton.jit
    def _load_w(w_rows, cols, row_ok, col_ok, EVEN: tl.constexpr):
        # Weights are read once: stream them past the cache.
        if EVEN:
            return tl.load(w_rows + cols[None, :], eviction_policy="evict_first")
        return tl.load(w_rows + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0,
                       eviction_policy="evict_first")

    @triton.jit
    def _int8_to_biased_float(w):
        # Four int8 weights a register: flip their sign bits (w + 128 in 0..255, one XOR for the
        # four), then each byte becomes the low mantissa byte of 2^23 (one byte permute each):
        # the float 2^23 + 128 + w, exact. Triton's own widening spends a permute and an
        # integer add a weight.
        return tl.inline_asm_elementwise(
            asm="""{
            .reg .b32 t, k;
            xor.b32 t, $4, 0x80808080;
            mov.b32 k, 0x4B000000;
            prmt.b32 $0, t, k, 0x7650;
            prmt.b32 $1, t, k, 0x7651;
            prmt.b32 $2, t, k, 0x7652;
            prmt.b32 $3, t, k, 0x7653;
            }""",
            constraints="=r,=r,=r,=r,r", args=[w], dtype=tl.float32, is_pure=True, pack=4)

    @triton.jit
    def _halves(t):
        # [A, B, 2C] -> two [A, B, C] of alternate columns, within a thread's registers
        return tl.split(tl.reshape(t, (t.shape[0], t.shape[1], t.shape[2] // 2, 2)))

    @triton.jit
    def _fma8(acc, w, x):
        # acc [N, K/8] + the sums of w [N, K] * x [K] over each 8 adjacent columns of a row (the
        # 8 a thread holds with "v8", so nothing moves between threads), as a chain of fused
        # multiply-adds: tl.sum would add a thread's products as a tree, a multiply and an add
        # for most of them (320 instructions a step against 291 for 8 rows, in the SASS).
        w3 = tl.reshape(w, (w.shape[0], w.shape[1] // 8, 8))
        x3 = tl.broadcast_to(tl.reshape(x, (1, x.shape[0] // 8, 8)), w3.shape)
        w_a, w_b = _halves(w3)
        x_a, x_b = _halves(x3)
        w_aa, w_ab = _halves(w_a)
        w_ba, w_bb = _halves(w_b)
        x_aa, x_ab = _halves(x_a)
        x_ba, x_bb = _halves(x_b)
        acc = _fma2(acc, w_aa, x_aa)
        acc = _fma2(acc, w_ab, x_ab)
        acc = _fma2(acc, w_ba, x_ba)
        acc = _fma2(acc, w_bb, x_bb)
        return acc

    @triton.jit
    def _fma2(acc, w, x):
        # acc + the products of the two columns of w [.., 2] and x [.., 2]
        w0, w1 = tl.split(w)
        x0, x1 = tl.split(x)
        return acc + w0 * x0 + w1 * x1

    @triton.jit
    def _accumulate(acc, sq, w, x_ptr, g_ptr, cols, col_ok, K, EVEN: tl.constexpr, NORM: tl.constexpr,
                    HAS_G: tl.constexpr, GATED: tl.constexpr, INT8_BITS: tl.constexpr,
                    REDUCE: tl.constexpr = False, INT8_ASM: tl.constexpr = False, SUM8: tl.constexpr = False):
        # x is reused by every program: keep it in L2.
        if EVEN:
            x = tl.load(x_ptr + cols, eviction_policy="evict_last").to(tl.float32)
        else:
            x = tl.load(x_ptr + cols, mask=col_ok, other=0.0, eviction_policy="evict_last").to(tl.float32)
        if GATED:  # x holds [gate | up]: the input is silu(gate) * up
            up = tl.load(x_ptr + K + cols, mask=col_ok, other=0.0, eviction_policy="evict_last")
            x = x * tl.sigmoid(x) * up.to(tl.float32)
        if NORM:  # RMSNorm: its weight (if given) now, its 1/rms (one number) at the end
            sq += x * x
            if HAS_G:
                g = tl.load(g_ptr + cols, mask=col_ok, other=0.0, eviction_policy="evict_last")
                x = x * g.to(tl.float32)
        if INT8_BITS:
            # int8 -> float32 without the conversion instruction (slow next to integer and
            # float adds; measured in `gemv-int8-bits-h100.json`): w + 128 in 0..255 becomes
            # the low mantissa bits of 2^23, and one float subtraction leaves w, exactly.
            if INT8_ASM:  # the same float, four weights at a time
                wf = _int8_to_biased_float(w) - 8388736.0
            else:
                wf = ((w.to(tl.int32) + 0x4B000080).to(tl.float32, bitcast=True)) - 8388736.0
        else:
            wf = w.to(tl.float32)
        if REDUCE:  # acc [BLOCK_N]: fewer registers, a reduction each step
            acc = acc + tl.sum(wf * x[None, :], axis=1)
        elif SUM8:  # acc [BLOCK_N, BLOCK_K / 8]: each thread sums the 8 columns it holds
            acc = _fma8(acc, wf, x)
        else:
            acc = acc + wf * x[None, :]
        return acc, sq

    @triton.jit(do_not_specialize=["K8"])
    def _gemv_kernel(
        x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, g_ptr, y_ptr, N, K, K8, eps,
        HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
        NORM: tl.constexpr, HAS_G: tl.constexpr, GATED: tl.constexpr, INT8_BITS: tl.constexpr,
        EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr,
        REDUCE: tl.constexpr = False, INT8_ASM: tl.constexpr = False, VEC8: tl.constexpr = False,
        K_STATIC: tl.constexpr = 0, SUM8: tl.constexpr = False,
    ):
        # One program computes BLOCK_N outputs: y[rows] = (w[rows, :] @ x) (* s[rows]), with the
        # optional prologues and epilogues that save decode a kernel each (see `gemv`).
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        row_ok = rows < N
        if REDUCE:
            acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        elif SUM8:
            acc = tl.zeros((BLOCK_N, BLOCK_K // 8), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        sq = tl.zeros((BLOCK_K,), dtype=tl.float32)  # NORM: sum of x squared, along the way
        if VEC8:
            # The row length as 8 * K8, K8 not specialised by Triton: rows are then known to be
            # 8-byte aligned only, so each thread reads 8 int8 weights of a row at a time (not
            # 16), the same columns it reads of x (8 bf16, 16 bytes). Where a block spans every
            # thread once (BLOCK_K = 8 x 32 x warps), the product then needs no exchange of x
            # through shared memory, with its barriers, each step, and fewer registers.
            w_rows = w_ptr + rows[:, None].to(tl.int64) * (K8 * 8)
        else:
            w_rows = w_ptr + rows[:, None].to(tl.int64) * K
        cols = tl.arange(0, BLOCK_K)  # [BLOCK_K]
        w = _load_w(w_rows, cols, row_ok, cols < K, EVEN)
        if PDL:
            # Launched while the previous kernel finishes (programmatic dependent launch): the
            # first weight block, which no kernel writes, is already loading; everything the
            # previous kernel may have written (x, residual) is read only after this wait.
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
        acc, sq = _accumulate(acc, sq, w, x_ptr, g_ptr, cols, cols < K, K, EVEN, NORM, HAS_G, GATED,
                              INT8_BITS, REDUCE, INT8_ASM, SUM8)
        if K_STATIC:  # K known when compiling: the steps unrolled, their loads free to start early
            for k0 in tl.static_range(BLOCK_K, K_STATIC, BLOCK_K):
                cols = k0 + tl.arange(0, BLOCK_K)
                col_ok = cols < K
                w = _load_w(w_rows, cols, row_ok, col_ok, EVEN)
                acc, sq = _accumulate(acc, sq, w, x_ptr, g_ptr, cols, col_ok, K, EVEN, NORM, HAS_G, GATED,
                                      INT8_BITS, REDUCE, INT8_ASM, SUM8)
        else:
            for k0 in range(BLOCK_K, K, BLOCK_K):
                cols = k0 + tl.arange(0, BLOCK_K)
                col_ok = cols < K
                w = _load_w(w_rows, cols, row_ok, col_ok, EVEN)
                acc, sq = _accumulate(acc, sq, w, x_ptr, g_ptr, cols, col_ok, K, EVEN, NORM, HAS_G, GATED,
                                      INT8_BITS, REDUCE, INT8_ASM, SUM8)
        if REDUCE:
            y = acc
        else:
            y = tl.sum(acc, axis=1)
        if NORM:
            y = y * tl.rsqrt(tl.sum(sq, axis=0) / K + eps)
        if HAS_SCALE:
            y = y * tl.load(s_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            y += tl.load(r_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)


def _config(n: int, k: int, itemsize: int, norm: bool = False, gated: bool = False) -> tuple:
    """(BLOCK_N, BLOCK_K, num_warps, variant), chosen from H100 sweeps of decoder layers' GEMV
    chains (`gemv_probe.py --chain-sweep`: Phi-3-mini, Llama-2-7B and Llama-3-8B, dependent
    launch on; bf16 in `gemv-chain-sweep-h100.json`, int8 in `gemv-chain-sweep-v8-h100.json`,
    `gemv-chain-sweep-v8-unroll-h100.json` and `gemv-chain-sweep-sum8-h100.json`), where the
    layer's whole chain is timed, so a kernel's effect on its neighbours counts. The variant
    names the kernel's options: "asm" widens int8 by byte permutes, "reduce" sums each row block
    as it goes (fewer registers, so more programs a multiprocessor), "v8" reads int8 rows 8
    weights a thread, in step with x, "sum8" (with "v8") keeps one running sum a row a thread,
    "unroll" unrolls the steps (K a compile-time constant). Rules of thumb behind the numbers:
    - int8 is bound by instructions and loads in flight, not bytes: widening four weights in
      five instructions instead of eight and a running row sum took Phi-3-mini's int8 chain
      from 1.90 to 2.42 TB/s; reading 16 weights a thread made every step pass x through
      shared memory behind barriers, and "v8" took Llama-2-7B's chain from 2.42 to 2.67 TB/s
      and Llama-3-8B's from 2.52 to 2.74 (the down projection with SwiGLU in front gaining most);
      the kernels with RMSNorm in front had kept the row sum, and its exchange, until "sum8":
      8 rows a program in 56 registers and no exchange took 2.2% off Phi-3-mini's chain and
      2.7% off Llama-3-8B's;
    - a prologue (RMSNorm, SwiGLU) is repeated by every program, so more rows share it, up to
      where too few programs are left to fill the machine;
    - bf16 reads 2.9-3.0 TB/s with 2-8 rows a program, 2-4 KB a row a step."""
    if itemsize == 1:  # int8
        v8 = k % 8 == 0
        # Blocks of 2,048 columns and 8 warps where they divide the rows (4,096 inputs and
        # Llama-3-8B's 14,336), else 1,024 and 4 (Phi-3-mini's 3,072; Llama-2-7B's 11,008).
        wide = k % 2048 == 0
        sum8 = (8, 2048, 8, "asm+v8+sum8") if wide else (8, 1024, 4, "asm+v8+sum8")
        if v8 and (norm or (wide and (not gated or k > 8192))):
            block_n, block_k, warps, variant = sum8
        elif v8 and gated:  # Phi-3-mini's 8,192 inputs gain from unrolling, longer rows not
            block_n, block_k, warps = 8, 1024, (8 if k > 12288 else 4)
            variant = "asm+v8" + ("+unroll" if k <= 8192 else "")
        elif v8:
            block_n, block_k, warps, variant = 2, 1024, 4, "asm+v8"
        elif norm:
            block_n, block_k, warps, variant = (8, 1024, 4, "asm+reduce") if k >= 4096 else (8, 512, 4, "asm+reduce")
        elif gated:
            block_n, block_k, warps, variant = 8, 1024, 8, "asm"
        else:
            block_n, block_k, warps, variant = 4, 1024, 4, "asm"
    elif norm:
        block_n, block_k, warps, variant = 4, 1024, 4, ""
    elif gated:
        block_n, block_k, warps, variant = (4, 2048, 8, "") if k > 8192 else (8, 1024, 8, "")
    else:
        block_n, block_k, warps, variant = (2, 2048, 8, "") if k % 2048 == 0 else (2, 1024, 4, "")
    return block_n, min(block_k, triton.next_power_of_2(k)), warps, variant


def swiglu_in_front(weight: torch.Tensor) -> bool:
    """Whether a down projection should take SwiGLU as its prologue (`gemv(gated=True)`) rather
    than after a small kernel of its own: always, now. Before int8 rows were read 8 weights a
    thread ("v8"), int8 took it only up to 8,192 inputs (Llama-2-7B's 11,008 decoded 3.6%
    slower with it, `decode-config-variants-h100.json`); with "v8" the chains of Llama-2-7B and
    Llama-3-8B are 3-5% faster with it (`gemv-chain-sweep-v8-*-h100.json`)."""
    return True


_DEPENDENT_LAUNCH: dict[torch.device, bool] = {}


def dependent_launch(device: torch.device) -> bool:
    """Whether kernels on `device` launch as programmatic dependent launches: CUDA on Hopper or
    newer with a Triton that has them, not interpreted, not switched off with QUILL_PDL=0.
    Measured on an H100 (`gemv_probe.py --pdl`): a chain of Phi-3-mini's layer GEMVs in a CUDA
    graph read 4.8% faster (2.74 -> 2.87 TB/s), Llama-2-7B's 3.1%. Decided once per device
    (`fast_paths.use_triton_kernels` asks before compiling, so traced code only reads the answer)."""
    if device not in _DEPENDENT_LAUNCH:
        _DEPENDENT_LAUNCH[device] = (
            triton is not None and not INTERPRET and device.type == "cuda"
            and os.environ.get("QUILL_PDL", "1") != "0"
            and torch.cuda.get_device_capability(device)[0] >= 9
            and hasattr(tl.extra.cuda, "gdc_wait")
        )
    return _DEPENDENT_LAUNCH[device]


def gemv(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None = None,
         config: tuple | None = None, *, bias: torch.Tensor | None = None,
         residual: torch.Tensor | None = None, rms_eps: float | None = None,
         norm_weight: torch.Tensor | None = None, gated: bool = False,
         int8_bits: bool = True, pdl: bool | None = None) -> torch.Tensor:
    """y = weight @ x (* scales) (+ bias) (+ residual): x [K] float, weight [N, K] contiguous
    (x's dtype, or int8 with `scales` [N]) -> y [N] in x's dtype. `config` overrides the block
    sizes, (BLOCK_N, BLOCK_K, num_warps[, variant]) (for the probe; see `_config`).

    Fused steps of a decoder layer, each one kernel launch fewer per layer at batch 1:
    - `rms_eps`: x is first RMS-normalised (a pre-norm before q/k/v or the MLP) and scaled by
      `norm_weight`, if given (the probe also times it without). 1/rms is one
      number, so its sum is taken alongside the product and applied at the end.
    - `gated`: x is [2K], gate then up, and the input is silu(gate) * up (SwiGLU's down proj).
    - `residual` [N]: added to the output (the residual stream after attention or MLP).
    Everything is in float32 until the one rounding of y; unfused PyTorch rounds each step to
    x's dtype, so bf16 results differ from it by about a bf16 step. `int8_bits=False` widens
    int8 weights with the plain conversion (for the probe).

    `pdl` (default: `dependent_launch(x.device)`) launches the kernel as a programmatic
    dependent launch: it starts while the kernel before it finishes and begins reading its
    weights, and reads x only once that kernel is done. Such a launch goes through the custom op
    `quill::gemv`, so that torch.compile calls it as it is (Inductor launches the Triton kernels
    it traces itself, without the launch attribute) and a CUDA graph records it with its
    attribute."""
    if pdl is None:
        pdl = dependent_launch(x.device)
    if pdl and config is None and int8_bits:
        return torch.ops.quill.gemv(x, weight, scales, bias, residual, norm_weight, rms_eps, gated)
    return _launch(x, weight, scales, config, bias, residual, rms_eps, norm_weight, gated, int8_bits, pdl)


@torch.library.custom_op("quill::gemv", mutates_args=())
def _gemv_op(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None, bias: torch.Tensor | None,
             residual: torch.Tensor | None, norm_weight: torch.Tensor | None, rms_eps: float | None,
             gated: bool) -> torch.Tensor:
    return _launch(x, weight, scales, None, bias, residual, rms_eps, norm_weight, gated, True, True)


@_gemv_op.register_fake
def _(x, weight, scales, bias, residual, norm_weight, rms_eps, gated):
    return x.new_empty(weight.shape[0])


def _launch(x, weight, scales, config, bias, residual, rms_eps, norm_weight, gated, int8_bits, pdl):
    n = weight.shape[0]
    k = weight.shape[1]
    y = torch.empty(n, device=x.device, dtype=x.dtype)
    config = config or _config(n, k, weight.element_size(), norm=rms_eps is not None, gated=gated)
    block_n, block_k, warps = config[:3]
    args = (x, weight, x if scales is None else scales, x if bias is None else bias,
            x if residual is None else residual, x if norm_weight is None else norm_weight, y, n, k, k // 8,
            rms_eps or 0.0)
    flags = dict(HAS_SCALE=scales is not None, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                 NORM=rms_eps is not None, HAS_G=norm_weight is not None, GATED=gated,
                 INT8_BITS=int8_bits and weight.dtype == torch.int8, PDL=pdl, num_warps=warps,
                 **({"launch_pdl": True} if pdl else {}))
    _gemv_kernel[(triton.cdiv(n, block_n),)](*args, **block_flags(n, k, config), **flags)
    return y


def block_flags(n: int, k: int, config: tuple) -> dict:
    """The kernel's compile-time block and variant options for a `gemv` config on [n, k]."""
    block_n, block_k = config[:2]
    variant = config[3] if len(config) > 3 else ""
    return dict(EVEN=n % block_n == 0 and k % block_k == 0, BLOCK_N=block_n, BLOCK_K=block_k,
                REDUCE="reduce" in variant, INT8_ASM="asm" in variant and NVIDIA_PTX,
                VEC8="v8" in variant and k % 8 == 0, SUM8="sum8" in variant and block_k >= 8,
                K_STATIC=k if "unroll" in variant else 0)


class GemvLinear(nn.Linear):
    """An `nn.Linear` (same parameters, same state-dict keys) whose single-row inputs go
    through `gemv`; longer inputs (prefill) keep cuBLAS, where the work is compute-bound."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "GemvLinear":
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != self.in_features:
            return F.linear(x, self.weight, self.bias)
        y = gemv(x.reshape(-1), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)
