"""Int8 weight-only matmul for short prompts on CUDA (Triton): every weight read once, as int8.

A completion after prefix reuse prefills a handful of tokens: an [M, K] activation with M of 16
or 64 (a prefill bucket) against each int8 weight. The route that serves long prompts, widening
the weight to bf16 and calling cuBLAS, moves five bytes per weight (int8 read, bf16 written and
read again), and at these M nothing else costs: on an H100 a 16-token Phi-3-mini int8 prefill
took 17 ms against 7 ms for bf16. Here each program reads a BLOCK_N-row slab of the weight once,
widens it in registers (exact: int8 fits bf16's mantissa) and multiplies it on tensor cores
(`tl.dot`) with every row of x, accumulating in float32; the per-row scale is applied once at
the end, where the widening route rounds the product to bf16 first.

Block sizes are fixed by `_config` (from `benchmarks/int8_prefill_probe.py`), not autotuned at
start-up. Called through the custom op `quill::int8_matmul`, so torch.compile calls it as it is
and CUDA graphs capture it. With `TRITON_INTERPRET=1` it runs on CPU tensors (the tests).
"""

from __future__ import annotations

import torch

from .gemv import available, triton

MAX_ROWS = 64  # longer inputs widen the weight and call cuBLAS (compute-bound there)

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _int8_matmul_kernel(
        x_ptr, w_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
        IEEE: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_ok = offs_m < M
        n_ok = offs_n < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                        mask=m_ok[:, None] & k_ok[None, :], other=0.0)
            # Weights are read once: stream them past the cache.
            w = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :],
                        mask=n_ok[:, None] & k_ok[None, :], other=0, eviction_policy="evict_first")
            if IEEE:  # float32 activations: no TF32 rounding
                acc += tl.dot(x, tl.trans(w.to(x.dtype)), input_precision="ieee")
            else:
                acc += tl.dot(x, tl.trans(w.to(x.dtype)))
        scales = tl.load(s_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        y = acc * scales[None, :]
        tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], y.to(y_ptr.dtype.element_ty),
                 mask=m_ok[:, None] & n_ok[None, :])


def supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `int8_matmul` takes x [M, K] (M <= MAX_ROWS rows) against an int8 weight [N, K]."""
    return (available(x.device) and x.dim() == 2 and 1 <= x.shape[0] <= MAX_ROWS
            and weight.dtype == torch.int8 and weight.shape[1] >= 16
            and x.dtype in (torch.bfloat16, torch.float16, torch.float32))


def _config(m: int, n: int, k: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, stages): all rows of x in one block (tl.dot needs
    at least 16). From the probe on an H100 (`int8-prefill-probe-h100.json`), the best over
    the layer shapes of Phi-3-mini, Llama-2-7B and Llama-3-8B: 32 weight rows a program, deeper
    K steps for 16 rows than for 64."""
    block_m = max(16, triton.next_power_of_2(m))
    block_k = min(256 if block_m <= 16 else 128, max(16, triton.next_power_of_2(k)))
    return block_m, 32, block_k, 4, 4 if block_m <= 16 else 3


def int8_matmul(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
                config: tuple | None = None) -> torch.Tensor:
    """x [M, K] @ (int8 weight [N, K]).T * scales [N] -> [M, N] in x's dtype. `config`
    overrides `_config` (for the probe)."""
    m, k = x.shape
    n = weight.shape[0]
    x = x if x.stride(1) == 1 else x.contiguous()
    assert weight.stride(1) == 1 and scales.is_contiguous()
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    block_m, block_n, block_k, warps, stages = config or _config(m, n, k)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m))
    _int8_matmul_kernel[grid](
        x, weight, scales, y, m, n, k, x.stride(0), weight.stride(0), y.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, STAGES=stages,
        IEEE=x.dtype == torch.float32, num_warps=warps,
    )
    return y


@torch.library.custom_op("quill::int8_matmul", mutates_args=())
def _int8_matmul_op(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return int8_matmul(x, weight, scales)


@_int8_matmul_op.register_fake
def _(x, weight, scales):
    return x.new_empty(x.shape[0], weight.shape[0])


__all__ = ["MAX_ROWS", "available", "int8_matmul", "supports"]
