"""A Triton kernel for int8 weight-only matrix-vector products on CUDA (batch-1 decode).

Decode at batch 1 reads every weight once per token, so its speed is bytes over bandwidth: int8
weights halve the bytes of bf16 only if the int8 values are widened in registers, next to the
multiply. `F.linear(x, w.to(bf16)) * scales` instead writes a bf16 copy of the weight and reads
it again (five bytes moved per weight instead of one), which is slower than plain bf16. This
kernel reads each int8 weight once, accumulates in float32 and applies the per-row scale at the
end. Prefill (many rows of x) is compute-bound and keeps the dequantize-then-matmul path.

The kernel is plain Triton, so `torch.compile(fullgraph=True)` and CUDA graphs capture it as a
user-defined kernel. `available()` is False without CUDA or Triton; callers fall back then.
"""

from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of PyTorch only.
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any failure to import means "no kernel"
    triton = None


def available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _int8_gemv_kernel(
        x_ptr, w_ptr, s_ptr, y_ptr, N, K,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        # One program computes BLOCK_N outputs: y[rows] = (w[rows, :] @ x) * s[rows].
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        row_ok = rows < N
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)  # [BLOCK_K]
            col_ok = cols < K
            x = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            w = tl.load(
                w_ptr + rows[:, None] * K + cols[None, :],
                mask=row_ok[:, None] & col_ok[None, :],
                other=0,
            ).to(tl.float32)  # [BLOCK_N, BLOCK_K]
            acc += w * x[None, :]
        s = tl.load(s_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        y = tl.sum(acc, axis=1) * s
        tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)


def _blocks(k: int) -> tuple[int, int, int]:
    # 8 rows x 512 columns per step: 4 KB of int8 per iteration, 32 bytes a thread with 4 warps
    # (wide loads); a 4096-row matrix gives 512 programs, several per SM.
    block_k = min(512, triton.next_power_of_2(k))
    return 8, block_k, 4


def int8_gemv(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x [K] (any float dtype), weight [N, K] int8 contiguous, scales [N] -> y [N] in x's dtype."""
    n, k = weight.shape
    y = torch.empty(n, device=x.device, dtype=x.dtype)
    block_n, block_k, warps = _blocks(k)
    grid = (triton.cdiv(n, block_n),)
    _int8_gemv_kernel[grid](x, weight, scales, y, n, k, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps)
    return y
