"""Decode attention over the filled part of the static KV cache, for CUDA graphs (Triton).

A CUDA-graph decode step needs fixed shapes, so attention through SDPA reads all `S_max`
cache positions under a mask; for Llama-2-7B with a 2,048-position cache that is 1 GB per token
(8% of the weights' bytes), in a kernel that an H100 profile shows at 15 us a layer. Here the
length comes from the `input_pos` tensor itself, read on the device: the grid is fixed (one
program per query head and per chunk of `CHUNK` cache positions), and chunks past the query's
position, or before its sliding window, return at once. The chunks' partial softmaxes are merged
(flash-decoding) by a second kernel, or, in `attention_step`, by the last chunk program of each
head to finish, which saves a launch per layer. Grouped-query attention maps each query head to
its kv head.

Matches `F.scaled_dot_product_attention` with the model's causal / sliding-window mask (a query
at position p sees keys max(0, p - W + 1) .. p) and scale 1/sqrt(head_dim). Runs on CPU tensors
with `TRITON_INTERPRET=1`, which is how the tests check it without a GPU. `DecodeAttention` is
the model's `Attention` with its decode steps through this kernel (`runtime/fast_paths.py` swaps
it in).
"""

from __future__ import annotations

import math

import torch

from ..model import Attention, Rope
from .gemv import available, dependent_launch, triton

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
    def _merge(m_ptr, l_ptr, o_ptr, y_row, base, c_first, c_last, offs_d, d_ok,
                   N_CHUNKS: tl.constexpr, MERGE_BLOCK: tl.constexpr, D_PAD: tl.constexpr):
        """Combine a head's partial softmaxes (m, l, o) of chunks c_first..c_last, stored at
        `base`, and write the normalised output row. The partial outputs are read MERGE_BLOCK
        chunks at a time: a [chunks, D_PAD] tile of them would set the kernel's registers."""
        # .cg: read from L2, where the other programs' stores went, not from L1.
        offs_c = tl.arange(0, N_CHUNKS)
        mine = (offs_c >= c_first) & (offs_c <= c_last)
        m_all = tl.load(m_ptr + base + offs_c, mask=mine, other=float("-inf"), cache_modifier=".cg")
        top = tl.max(m_all, axis=0)  # finite: every chunk of the head holds a key
        l_all = tl.load(l_ptr + base + offs_c, mask=mine, other=0.0, cache_modifier=".cg")
        total = tl.sum(l_all * tl.exp(m_all - top), axis=0)  # exp(-inf) = 0 outside the head's chunks
        acc = tl.zeros((D_PAD,), dtype=tl.float32)
        for g in range(c_first // MERGE_BLOCK, c_last // MERGE_BLOCK + 1):
            offs_g = g * MERGE_BLOCK + tl.arange(0, MERGE_BLOCK)
            in_g = (offs_g >= c_first) & (offs_g <= c_last)
            m_g = tl.load(m_ptr + base + offs_g, mask=in_g, other=float("-inf"), cache_modifier=".cg")
            o_g = tl.load(o_ptr + (base + offs_g)[:, None] * D_PAD + offs_d[None, :], mask=in_g[:, None],
                          other=0.0, cache_modifier=".cg")
            acc += tl.sum(o_g * tl.exp(m_g - top)[:, None], axis=0)
        tl.store(y_row + offs_d, (acc / total).to(y_row.dtype.element_ty), mask=d_ok)

    @triton.jit
    def _chunk_kernel(
        q_ptr, k_ptr, v_ptr, pos_ptr, m_ptr, l_ptr, o_ptr, cos_ptr, sin_ptr, y_ptr, count_ptr,
        stride_kb, stride_kh, stride_ks, stride_qb,
        H: tl.constexpr, GROUP: tl.constexpr, WINDOW: tl.constexpr, SCALE: tl.constexpr,
        N_CHUNKS: tl.constexpr, CHUNK: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
        FUSED: tl.constexpr, ROPE_DIM: tl.constexpr, PDL: tl.constexpr, MERGE_BLOCK: tl.constexpr,
        EARLY_EXIT: tl.constexpr, LATE_CVT: tl.constexpr,
    ):
        # FUSED: q_ptr is the q/k/v projection before rotary, cos/sin the whole rotary tables
        # [S_max, ROPE_DIM]; this step takes their row `pos`, rotates q and the new key, writes
        # the new key and value into the cache, uses them for position `pos` from registers, and
        # merges the chunks itself: the last chunk program of a head to finish (counted in
        # count_ptr, which it resets) combines them, and a head whose keys fit one chunk needs
        # no partial results at all. Otherwise q is rotated, the cache already holds position
        # `pos`, every chunk writes a partial result (empty when it holds no key) and
        # `_merge_kernel` combines them. With FUSED the grid's chunks count from the first chunk
        # in the window, so a sliding window needs no programs for the chunks before it.
        # EARLY_EXIT: the grid's chunks run from last to first, so the programs past the position
        # are scheduled first, and they read the position before waiting for the projection (it
        # was written before the step's first kernel): they end while the projection still
        # runs, and only programs with keys to read wait. LATE_CVT: keys and values stay in the
        # cache's dtype in registers until they are used, the new ones rounded to it.
        if PDL and not EARLY_EXIT:  # launched early (see gemv.dependent_launch): wait for q/k/v
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
        bh = tl.program_id(0)  # b * H + h
        b = bh // H
        h = bh % H
        pos = tl.load(pos_ptr)  # the query's position: keys 0..pos are filled
        first = 0
        if WINDOW > 0:
            first = tl.maximum(pos - WINDOW + 1, 0)
        c_first = first // CHUNK  # the chunks holding keys first..pos
        c_last = pos // CHUNK
        c = tl.program_id(1)
        if EARLY_EXIT:
            c = tl.num_programs(1) - 1 - c
        if FUSED:
            c += c_first
        lo = c * CHUNK
        slot = bh * N_CHUNKS + c
        offs_d = tl.arange(0, D_PAD)  # head sizes like 80 or 96 are padded to a power of two
        d_ok = offs_d < D
        if (c < c_first) | (c > c_last):
            if not FUSED:
                tl.store(m_ptr + slot, float("-inf"))
                tl.store(l_ptr + slot, 0.0)
                tl.store(o_ptr + slot * D_PAD + offs_d, tl.zeros((D_PAD,), dtype=tl.float32))
        else:
            if PDL and EARLY_EXIT:
                tl.extra.cuda.gdc_wait()
                tl.extra.cuda.gdc_launch_dependents()
            kv = b * stride_kb + (h // GROUP) * stride_kh
            s_idx = lo + tl.arange(0, CHUNK)  # [CHUNK]
            offs = kv + s_idx[:, None] * stride_ks + offs_d[None, :]
            if FUSED:
                in_rope = offs_d < ROPE_DIM
                cos = tl.load(cos_ptr + pos * ROPE_DIM + offs_d, mask=in_rope, other=1.0).to(tl.float32)
                sin = tl.load(sin_ptr + pos * ROPE_DIM + offs_d, mask=in_rope, other=0.0).to(tl.float32)
                row = q_ptr + b * stride_qb
                q = _rotate(row + h * D, offs_d, d_ok, cos, sin, ROPE_DIM) * SCALE
                kv_col = (H + h // GROUP) * D
                k_new = _rotate(row + kv_col, offs_d, d_ok, cos, sin, ROPE_DIM)
                v_new = tl.load(row + kv_col + (H // GROUP) * D + offs_d, mask=d_ok, other=0.0).to(tl.float32)
                ok = (s_idx < pos) & (s_idx >= first)  # the cache's part; `pos` comes from registers
                k = tl.load(k_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0)
                v = tl.load(v_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0)
                if not LATE_CVT:
                    k, v = k.to(tl.float32), v.to(tl.float32)
                here = (s_idx == pos)[:, None]
                k = tl.where(here, k_new[None, :].to(k.dtype), k)
                v = tl.where(here, v_new[None, :].to(v.dtype), v)
                ok = ok | (s_idx == pos)
                if (h % GROUP == 0) & (c == c_last):
                    # One program per kv head writes the new entry; no program reads it this step.
                    dst = kv + pos * stride_ks + offs_d
                    tl.store(k_ptr + dst, k_new.to(k_ptr.dtype.element_ty), mask=d_ok)
                    tl.store(v_ptr + dst, v_new.to(v_ptr.dtype.element_ty), mask=d_ok)
            else:
                q = tl.load(q_ptr + b * stride_qb + h * D + offs_d, mask=d_ok, other=0.0).to(tl.float32) * SCALE
                ok = (s_idx <= pos) & (s_idx >= first)
                k = tl.load(k_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                v = tl.load(v_ptr + offs, mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            scores = tl.sum(k.to(tl.float32) * q[None, :], axis=1)
            scores = tl.where(ok, scores, float("-inf"))
            m = tl.max(scores, axis=0)
            p = tl.exp(scores - m)
            l = tl.sum(p, axis=0)
            o = tl.sum(p[:, None] * v.to(tl.float32), axis=0)
            if FUSED and c_first == c_last:
                tl.store(y_ptr + bh * D + offs_d, (o / l).to(y_ptr.dtype.element_ty), mask=d_ok)
            else:
                tl.store(m_ptr + slot, m)
                tl.store(l_ptr + slot, l)
                tl.store(o_ptr + slot * D_PAD + offs_d, o)
                if FUSED:
                    # Every thread's stores are done before one thread publishes them (release).
                    tl.debug_barrier()
                    done = tl.atomic_add(count_ptr + bh, 1, sem="acq_rel", scope="gpu")
                    if done == c_last - c_first:  # the others have all published theirs
                        tl.store(count_ptr + bh, 0)  # ready for the next step
                        _merge(m_ptr, l_ptr, o_ptr, y_ptr + bh * D, bh * N_CHUNKS, c_first, c_last,
                                   offs_d, d_ok, N_CHUNKS, MERGE_BLOCK, D_PAD)

    @triton.jit
    def _merge_kernel(m_ptr, l_ptr, o_ptr, y_ptr, N_CHUNKS: tl.constexpr, D: tl.constexpr,
                      D_PAD: tl.constexpr):
        bh = tl.program_id(0)
        offs_d = tl.arange(0, D_PAD)
        # Chunks without keys hold m = -inf, l = 0, o = 0: they weigh nothing.
        _merge(m_ptr, l_ptr, o_ptr, y_ptr + bh * D, bh * N_CHUNKS, 0, N_CHUNKS - 1, offs_d, offs_d < D,
                   N_CHUNKS, N_CHUNKS, D_PAD)


def supported(head_dim: int) -> bool:
    """Head sizes up to 256 (those that are no power of two are padded in registers)."""
    return 1 <= head_dim <= 256


def _chunk(span: int) -> int:
    # About 64 chunks over `span` positions: small chunks waste little at short lengths, and
    # 64 partial results per head keep the merge cheap.
    return max(32, min(512, triton.next_power_of_2(max(1, span // 64))))


def _attend(src: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, input_pos: torch.Tensor,
            window: int | None, n_head: int, d: int, cos: torch.Tensor | None = None,
            sin: torch.Tensor | None = None, counts: torch.Tensor | None = None,
            config: tuple | None = None) -> torch.Tensor:
    """Launch the kernels. src [B, ...] holds q (or, with cos/sin, q/k/v before rotary) in each
    row; returns [B, n_head * d] in src's dtype. With cos/sin the chunk kernel merges its own
    results, counting finished chunks in `counts` (int32 [B * n_head], zero between calls)."""
    bsz = src.shape[0]
    n_kv, s_max = k_cache.shape[1], k_cache.shape[2]
    # Unfused (no config): chunks over the whole cache, merged by `_merge_kernel`.
    chunk, warps, merge_block, early_exit, late_cvt = config or (_chunk(s_max), 4, 8, False, False)
    n_chunks_p2 = triton.next_power_of_2(triton.cdiv(s_max, chunk))
    merge_block = min(merge_block, n_chunks_p2)
    rows = bsz * n_head
    m = torch.empty(rows, n_chunks_p2, device=src.device, dtype=torch.float32)
    l = torch.empty_like(m)
    d_pad = triton.next_power_of_2(d)
    o = torch.empty(rows, n_chunks_p2, d_pad, device=src.device, dtype=torch.float32)
    y = torch.empty(bsz, n_head * d, device=src.device, dtype=src.dtype)
    assert k_cache.stride(3) == 1 and src.stride(-1) == 1
    fused = cos is not None
    if fused:
        assert cos.is_contiguous() and sin.is_contiguous() and counts is not None and counts.numel() >= rows
    # Dependent launch only from the custom op (attention_step): Inductor launches the kernels
    # it traces (decode_attention) itself, without the attribute.
    pdl = fused and dependent_launch(src.device)
    early_exit = early_exit and pdl  # without dependent launch, programs past the position go last
    # Grid over n_chunks_p2: padded chunks lie past S_max, so past any position, and hold no key.
    # The fused kernel counts chunks from the window's first: W keys span at most this many.
    grid_chunks = n_chunks_p2
    if fused and window:
        grid_chunks = min(n_chunks_p2, triton.cdiv(window - 1, chunk) + 1)
    _chunk_kernel[(rows, grid_chunks)](
        src, k_cache, v_cache, input_pos, m, l, o, cos if fused else src, sin if fused else src, y,
        counts if fused else m, k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), src.stride(0),
        H=n_head, GROUP=n_head // n_kv, WINDOW=window or 0, SCALE=1.0 / math.sqrt(d),
        N_CHUNKS=n_chunks_p2, CHUNK=chunk, D=d, D_PAD=d_pad, FUSED=fused,
        ROPE_DIM=cos.shape[-1] if fused else 0, PDL=pdl, MERGE_BLOCK=merge_block, EARLY_EXIT=early_exit,
        LATE_CVT=late_cvt, num_warps=warps,
        **({"launch_pdl": True} if pdl else {}),
    )
    if not fused:
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


def _step_config(max_seq_length: int, head_dim: int, window: int | None) -> tuple[int, int, int, bool, bool]:
    """(chunk, warps, merge_block, EARLY_EXIT, LATE_CVT) of the fused step (`_chunk_kernel`);
    merge_block is how many chunks' partial results the merge reads at a time.

    Timed on an H100 (`benchmarks/attention_probe.py --gemv`, each step after its int8 q/k/v
    projection, results in `benchmarks/results/attention-probe-*`): 32-position chunks on 2
    warps with both options took 1.4-5.5 us a layer up to 200 positions where 64 on 4 warps
    without them took 2.4-7.6 (Phi-3-mini), and as long at 1,600. The grid counts chunks over
    the window, so sizes follow its span; a long cache keeps about 64 chunks, since every chunk
    is a program that must start and read the position."""
    chunk = _chunk(min(max_seq_length, window or max_seq_length))
    warps = 2 if chunk == 32 else 4
    return chunk, warps, 8, True, True


def attention_step(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor, input_pos: torch.Tensor, n_head: int, window: int | None,
                   counts: torch.Tensor) -> torch.Tensor:
    """One decode step of attention from the q/k/v projection, in one kernel: rotary on q and
    the new key (cos/sin: the whole tables [S_max, rope_dim]; the kernel takes the row of the
    query's position), the new key and value written to the caches at input_pos, attention over
    positions up to it, the chunks merged. qkv [B, (H + 2 KVH) * D]; counts int32 [B * H],
    zeros, left zero (see `_attend`); returns [B, H * D], ready for the output projection. The
    rotary, rotary-table gather, cache-write and merge kernels of the unfused step are gone."""
    d = k_cache.shape[3]
    config = _step_config(k_cache.shape[2], d, window)
    return _attend(qkv, k_cache, v_cache, input_pos, window, n_head, d, cos, sin, counts, config)


class DecodeAttention(Attention):
    """`Attention` whose one-token steps at fixed shapes (no `kv_len`) read only the filled cache
    positions through `decode_attention`; prefill and sized steps run the reference."""

    def forward(
        self, x: torch.Tensor, rope: Rope, mask: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None = None
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        if seqlen != 1 or kv_len is not None:
            return super().forward(x, rope, mask, input_pos, kv_len)
        q, k, v = self.heads(x)
        q, k = self.rotate(q, k, rope)
        k, v = self.kv_cache.update(input_pos, k, v)  # [B, KVH, S_max, Dh]
        y = decode_attention(q, k, v, input_pos, self.window)  # [B, H, 1, Dh]
        return self.wo(y.transpose(1, 2).reshape(bsz, 1, self.n_head * self.head_dim))


__all__ = ["DecodeAttention", "attention_step", "available", "decode_attention", "supported"]
