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
    def _rotate(base, offs_d, d_ok, cos, sin, ROPE_DIM: tl.constexpr):
        """Load a head's vector at `base` and rotate its first ROPE_DIM dims (rotate-half)."""
        x = tl.load(base + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        if ROPE_DIM > 0:
            half: tl.constexpr = ROPE_DIM // 2
            in_rope = offs_d < ROPE_DIM
            partner = tl.where(offs_d < half, offs_d + half, offs_d - half)
            other = tl.load(base + partner, mask=in_rope, other=0.0).to(tl.float32)
            sign = tl.where(offs_d < half, -1.0, 1.0)
            x = x * cos + sign * other * sin  # cos = 1, sin = 0 past ROPE_DIM
        return x

    @triton.jit
    def _chunk_kernel(
        q_ptr, k_ptr, v_ptr, pos_ptr, m_ptr, l_ptr, o_ptr, cos_ptr, sin_ptr,
        stride_kb, stride_kh, stride_ks, stride_qb,
        H: tl.constexpr, GROUP: tl.constexpr, WINDOW: tl.constexpr, SCALE: tl.constexpr,
        N_CHUNKS: tl.constexpr, CHUNK: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
        FUSED: tl.constexpr, ROPE_DIM: tl.constexpr,
    ):
        # FUSED: q_ptr is the q/k/v projection before rotary; this step rotates q and the new
        # key, writes the new key and value into the cache, and uses them for position `pos`
        # from registers. Otherwise q is rotated and the cache already holds position `pos`.
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
            kv = b * stride_kb + (h // GROUP) * stride_kh
            s_idx = lo + tl.arange(0, CHUNK)  # [CHUNK]
            offs = kv + s_idx[:, None] * stride_ks + offs_d[None, :]
            if FUSED:
                in_rope = offs_d < ROPE_DIM
                cos = tl.load(cos_ptr + offs_d, mask=in_rope, other=1.0).to(tl.float32)
                sin = tl.load(sin_ptr + offs_d, mask=in_rope, other=0.0).to(tl.float32)
                row = q_ptr + b * stride_qb
                q = _rotate(row + h * D, offs_d, d_ok, cos, sin, ROPE_DIM) * SCALE
                kv_col = (H + h // GROUP) * D
                k_new = _rotate(row + kv_col, offs_d, d_ok, cos, sin, ROPE_DIM)
                v_new = tl.load(row + kv_col + (H // GROUP) * D + offs_d, mask=d_ok, other=0.0).to(tl.float32)
                ok = (s_idx < pos) & (s_idx >= first)  # the cache's part; `pos` comes from registers
                k = tl.load(k_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                v = tl.load(v_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                here = (s_idx == pos)[:, None]
                k = tl.where(here, k_new[None, :], k)
                v = tl.where(here, v_new[None, :], v)
                ok = ok | (s_idx == pos)
                if (h % GROUP == 0) & (pos < lo + CHUNK):
                    # One program per kv head writes the new entry; no program reads it this step.
                    dst = kv + pos * stride_ks + offs_d
                    tl.store(k_ptr + dst, k_new.to(k_ptr.dtype.element_ty), mask=d_ok)
                    tl.store(v_ptr + dst, v_new.to(v_ptr.dtype.element_ty), mask=d_ok)
            else:
                q = tl.load(q_ptr + b * stride_qb + h * D + offs_d, mask=d_ok, other=0.0).to(tl.float32) * SCALE
                ok = (s_idx <= pos) & (s_idx >= first)
                k = tl.load(k_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                v = tl.load(v_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            scores = tl.sum(k * q[None, :], axis=1)
            scores = tl.where(ok, scores, float("-inf"))
            m = tl.max(scores, axis=0)
            p = tl.exp(scores - m)
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


def _attend(src: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, input_pos: torch.Tensor,
            window: int | None, n_head: int, d: int, cos: torch.Tensor | None = None,
            sin: torch.Tensor | None = None, rope_dim: int = 0) -> torch.Tensor:
    """Launch both kernels. src [B, ...] holds q (or, with cos/sin, q/k/v before rotary) in each
    row; returns [B, n_head * d] in src's dtype."""
    bsz = src.shape[0]
    n_kv, s_max = k_cache.shape[1], k_cache.shape[2]
    chunk = _chunk(s_max)
    n_chunks_p2 = triton.next_power_of_2(triton.cdiv(s_max, chunk))
    rows = bsz * n_head
    m = torch.empty(rows, n_chunks_p2, device=src.device, dtype=torch.float32)
    l = torch.empty_like(m)
    d_pad = triton.next_power_of_2(d)
    o = torch.empty(rows, n_chunks_p2, d_pad, device=src.device, dtype=torch.float32)
    assert k_cache.stride(3) == 1 and src.stride(-1) == 1
    fused = cos is not None
    # Grid over n_chunks_p2 so padded chunks (past S_max, so past any position) are written empty.
    _chunk_kernel[(rows, n_chunks_p2)](
        src, k_cache, v_cache, input_pos, m, l, o, cos if fused else src, sin if fused else src,
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), src.stride(0),
        H=n_head, GROUP=n_head // n_kv, WINDOW=window or 0, SCALE=1.0 / math.sqrt(d),
        N_CHUNKS=n_chunks_p2, CHUNK=chunk, D=d, D_PAD=d_pad, FUSED=fused, ROPE_DIM=rope_dim,
        num_warps=4,
    )
    y = torch.empty(bsz, n_head * d, device=src.device, dtype=src.dtype)
    _merge_kernel[(rows,)](m, l, o, y, N_CHUNKS=n_chunks_p2, D=d, D_PAD=d_pad, num_warps=4)
    return y


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     input_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """q [B, H, 1, D] (rotated); k_cache, v_cache [B, KVH, S_max, D] with the query's position
    already written; input_pos [1] (the query's position, on the device). Returns [B, H, 1, D]
    in q's dtype."""
    bsz, n_head, _, d = q.shape
    y = _attend(q.reshape(bsz, n_head * d), k_cache, v_cache, input_pos, window, n_head, d)
    return y.view(bsz, n_head, 1, d)


def attention_step(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor, input_pos: torch.Tensor, n_head: int, window: int | None) -> torch.Tensor:
    """One decode step of attention from the q/k/v projection: rotary on q and the new key
    (cos/sin [rope_dim], the rows for the query's position), the new key and value written to
    the caches at input_pos, attention over positions up to it. qkv [B, (H + 2 KVH) * D];
    returns [B, H * D], ready for the output projection. The rotary and cache-write kernels
    of the unfused step are gone."""
    d = k_cache.shape[3]
    return _attend(qkv, k_cache, v_cache, input_pos, window, n_head, d, cos, sin, cos.shape[-1])


__all__ = ["attention_step", "available", "decode_attention", "supported"]
