"""Decode attention over the filled part of the static KV cache, for CUDA graphs (Triton).

A CUDA-graph decode step needs fixed shapes, so attention through SDPA reads all `S_max`
cache positions under a mask; for Llama-2-7B with a 2,048-position cache that is 1 GB per token
(8% of the weights' bytes), in a kernel that an H100 profile shows at 15 us a layer. Here the
length comes from the `input_pos` tensor itself, read on the device: the grid is fixed (one
program per query head and per chunk of `CHUNK` cache positions), and chunks past the query's
position, or before its sliding window, return at once. A second kernel merges the chunks'
partial softmaxes (flash-decoding). Grouped-query attention maps each query head to its kv head.

Matches `F.scaled_dot_product_attention` with the model's causal / sliding-window mask (a query
at position p sees keys max(0, p - W + 1) .. p) and scale 1/sqrt(head_dim). Runs on CPU tensors
with `TRITON_INTERPRET=1`, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import math

import torch

from .gemv import available, triton

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _chunk_kernel(
        q_ptr, k_ptr, v_ptr, pos_ptr, m_ptr, l_ptr, o_ptr,
        stride_kb, stride_kh, stride_ks, stride_qb,
        H: tl.constexpr, GROUP: tl.constexpr, WINDOW: tl.constexpr, SCALE: tl.constexpr,
        N_CHUNKS: tl.constexpr, CHUNK: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
    ):
        bh = tl.program_id(0)  # b * H + h
        c = tl.program_id(1)
        b = bh // H
        h = bh % H
        pos = tl.load(pos_ptr)  # the query's position: keys 0..pos are filled
        lo = c * CHUNK
        first = 0
        if WINDOW > 0:
            first = tl.maximum(pos - WINDOW + 1, 0)
        slot = bh * N_CHUNKS + c
        offs_d = tl.arange(0, D_PAD)  # head sizes like 80 or 96 are padded to a power of two
        d_ok = offs_d < D
        if (lo > pos) | (lo + CHUNK <= first):
            tl.store(m_ptr + slot, float("-inf"))
            tl.store(l_ptr + slot, 0.0)
            tl.store(o_ptr + slot * D_PAD + offs_d, tl.zeros((D_PAD,), dtype=tl.float32))
        else:
            q = tl.load(q_ptr + b * stride_qb + h * D + offs_d, mask=d_ok, other=0.0).to(tl.float32) * SCALE
            kv = b * stride_kb + (h // GROUP) * stride_kh
            s_idx = lo + tl.arange(0, CHUNK)  # [CHUNK]
            ok = (s_idx <= pos) & (s_idx >= first)
            offs = kv + s_idx[:, None] * stride_ks + offs_d[None, :]
            k = tl.load(k_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            scores = tl.sum(k * q[None, :], axis=1)
            scores = tl.where(ok, scores, float("-inf"))
            m = tl.max(scores, axis=0)
            p = tl.exp(scores - m)
            v = tl.load(v_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            tl.store(m_ptr + slot, m)
            tl.store(l_ptr + slot, tl.sum(p, axis=0))
            tl.store(o_ptr + slot * D_PAD + offs_d, tl.sum(p[:, None] * v, axis=0))

    @triton.jit
    def _merge_kernel(m_ptr, l_ptr, o_ptr, y_ptr, N_CHUNKS: tl.constexpr, D: tl.constexpr,
                      D_PAD: tl.constexpr):
        bh = tl.program_id(0)
        offs_c = tl.arange(0, N_CHUNKS)
        offs_d = tl.arange(0, D_PAD)
        m = tl.load(m_ptr + bh * N_CHUNKS + offs_c)  # [N_CHUNKS]
        l = tl.load(l_ptr + bh * N_CHUNKS + offs_c)
        o = tl.load(o_ptr + (bh * N_CHUNKS + offs_c)[:, None] * D_PAD + offs_d[None, :])  # [N_CHUNKS, D_PAD]
        top = tl.max(m, axis=0)
        w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))
        y = tl.sum(o * w[:, None], axis=0) / tl.sum(l * w, axis=0)
        tl.store(y_ptr + bh * D + offs_d, y.to(y_ptr.dtype.element_ty), mask=offs_d < D)


def supported(head_dim: int) -> bool:
    """Head sizes up to 256 (those that are no power of two are padded in registers)."""
    return 1 <= head_dim <= 256


def _chunk(max_seq_length: int) -> int:
    # About 64 chunks a head: small chunks waste little at short lengths, and 64 partial
    # results per head keep the merge cheap.
    return max(32, min(512, triton.next_power_of_2(max(1, max_seq_length // 64))))


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     input_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """q [B, H, 1, D]; k_cache, v_cache [B, KVH, S_max, D]; input_pos [1] (the query's position,
    on the device). Returns [B, H, 1, D] in q's dtype."""
    bsz, n_head, _, d = q.shape
    n_kv, s_max = k_cache.shape[1], k_cache.shape[2]
    chunk = _chunk(s_max)
    n_chunks = triton.cdiv(s_max, chunk)
    n_chunks_p2 = triton.next_power_of_2(n_chunks)
    rows = bsz * n_head
    m = torch.empty(rows, n_chunks_p2, device=q.device, dtype=torch.float32)
    l = torch.empty_like(m)
    d_pad = triton.next_power_of_2(d)
    o = torch.empty(rows, n_chunks_p2, d_pad, device=q.device, dtype=torch.float32)
    q2 = q.reshape(bsz, n_head * d)
    assert k_cache.stride(3) == 1 and q2.stride(1) == 1
    # Grid over n_chunks_p2 so padded chunks (past S_max, so past any position) are written empty.
    _chunk_kernel[(rows, n_chunks_p2)](
        q2, k_cache, v_cache, input_pos, m, l, o,
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), q2.stride(0),
        H=n_head, GROUP=n_head // n_kv, WINDOW=window or 0, SCALE=1.0 / math.sqrt(d),
        N_CHUNKS=n_chunks_p2, CHUNK=chunk, D=d, D_PAD=d_pad, num_warps=4,
    )
    y = torch.empty(bsz, n_head, 1, d, device=q.device, dtype=q.dtype)
    _merge_kernel[(rows,)](m, l, o, y, N_CHUNKS=n_chunks_p2, D=d, D_PAD=d_pad, num_warps=4)
    return y


__all__ = ["available", "decode_attention", "supported"]
