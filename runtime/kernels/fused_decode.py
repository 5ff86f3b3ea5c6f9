"""A decoder layer's batch-1 decode step in five kernel launches (CUDA, Triton).

In a CUDA-graph decode step every kernel costs its launch gap on top of its work, and most of a
layer's kernels are tiny: an H100 profile of Llama-2-7B showed about 14 kernels a layer, four of
them the weight-reading matrix-vector products. Here a pre-norm layer (RMSNorm, SwiGLU, the
Llama / Mistral / Phi-3 / SmolLM2 block) runs as:

    qkv = W_qkv @ rms(x)                 gemv, RMSNorm fused in front
    a   = attention(rope(q), cache + k)  attention_step: rotary, cache write, split-KV attention
                                         with the chunks merged by the last one to finish
    x   = x + W_o @ a                    gemv, residual fused behind
    gu  = W_13 @ rms(x)                  gemv, RMSNorm fused in front
    x   = x + W_2 @ (silu(g) * u)        gemv, SwiGLU fused in front (`swiglu_in_front` can
                                         give it its own kernel), residual behind

and the final norm joins the vocabulary projection. The weights are the model's own (`GemvLinear`,
or `Int8Linear` with its scales), so nothing is copied. Layers of another shape (LayerNorm, a
parallel block, GELU, int4 linears) keep the unfused path; prefill always does. `FusedDecodeBlock`
and `FusedHead` are the model's `TransformerBlock` and `OutputHead` with their decode steps
through these kernels (`runtime/fast_paths.py` swaps them in where `block_supported` and
`head_supported` say they fit).

`attention_step` writes the KV cache, so it is a custom op that declares the mutation: Inductor
then keeps the write in place instead of copying the cache (a user Triton kernel's stores would
be traced through functionalisation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..model import FeedForward, OutputHead, RMSNorm, Rope, TransformerBlock
from .decode_attention import attention_step, supported
from .gemv import GemvLinear, gemv, swiglu_in_front


@torch.library.custom_op("quill::attention_step", mutates_args=("k_cache", "v_cache", "counts"))
def _attention_step_op(qkv: Tensor, k_cache: Tensor, v_cache: Tensor, cos: Tensor, sin: Tensor,
                       input_pos: Tensor, counts: Tensor, n_head: int, window: int) -> Tensor:
    return attention_step(qkv, k_cache, v_cache, cos, sin, input_pos, n_head, window or None, counts)


@_attention_step_op.register_fake
def _(qkv, k_cache, v_cache, cos, sin, input_pos, counts, n_head, window):
    return qkv.new_empty(qkv.shape[0], n_head * k_cache.shape[3])


def _gemv_weights(linear: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """(weight, per-row scales) of a linear the GEMV kernel can read; None for any other."""
    from ..quantize import Int8Linear

    if isinstance(linear, GemvLinear):
        return linear.weight, None
    if isinstance(linear, Int8Linear) and linear.use_int8_gemv:
        return linear.weight, linear.scales
    return None


def _linear(linear: nn.Module, x: Tensor, **fused) -> Tensor:
    weight, scales = _gemv_weights(linear)
    return gemv(x, weight, scales, bias=linear.bias, **fused)


def block_supported(block: nn.Module) -> bool:
    """Whether `decode_block` can run this `TransformerBlock`."""
    attn = block.attention
    ff = block.feed_forward
    return (
        not block.parallel
        and isinstance(block.attention_norm, RMSNorm) and isinstance(block.ffn_norm, RMSNorm)
        and isinstance(ff, FeedForward) and ff.act is torch.nn.functional.silu
        and supported(attn.head_dim)
        and all(_gemv_weights(m) is not None for m in (attn.wqkv, attn.wo, ff.w13, ff.w2))
    )


def decode_block(block: nn.Module, x: Tensor, cos: Tensor, sin: Tensor, input_pos: Tensor) -> Tensor:
    """One token through a layer: x [1, 1, D] at input_pos [1]; cos/sin are the model's whole
    rotary tables [S_max, rope_dim] (the attention kernel reads the row it needs, which spares
    a gather kernel per step)."""
    attn, ff = block.attention, block.feed_forward
    h = x.reshape(-1)  # [D], the residual stream
    qkv = _linear(attn.wqkv, h, rms_eps=block.attention_norm.eps, norm_weight=block.attention_norm.weight)
    cache = attn.kv_cache
    a = torch.ops.quill.attention_step(qkv[None], cache.k_cache, cache.v_cache, cos, sin, input_pos,
                                       attn.step_counts, attn.n_head, attn.window or 0)
    h = _linear(attn.wo, a.reshape(-1), residual=h)
    gate_up = _linear(ff.w13, h, rms_eps=block.ffn_norm.eps, norm_weight=block.ffn_norm.weight)
    if swiglu_in_front(ff.w2.weight):
        h = _linear(ff.w2, gate_up, gated=True, residual=h)
    else:
        gate, up = gate_up.split(ff.hidden)
        h = _linear(ff.w2, torch.nn.functional.silu(gate) * up, residual=h)
    return h.view_as(x)


def head_supported(model: nn.Module) -> bool:
    """Whether `decode_head` can run the model's final norm and vocabulary projection."""
    if not isinstance(model.norm, RMSNorm):
        return False
    if model.output is None:
        return model.tok_embeddings.weight.is_floating_point()
    return _gemv_weights(model.output) is not None


def decode_head(x: Tensor, norm: RMSNorm, output: nn.Module | None, embedding: nn.Embedding) -> Tensor:
    """Logits [1, 1, V] of the last hidden state x [1, 1, D]: final RMSNorm fused into the GEMV."""
    h = x.reshape(-1)
    fused = dict(rms_eps=norm.eps, norm_weight=norm.weight)
    if output is None:  # tied embeddings
        logits = gemv(h, embedding.weight, **fused)
    else:
        logits = _linear(output, h, **fused)
    return logits.view(1, 1, -1)


def add_step_counts(block: nn.Module) -> None:
    """Give the block's attention the kernel's count of finished chunks per head (batch 1), zero
    between steps. Made before any CUDA graph is captured, so that its address stays fixed."""
    attn = block.attention
    counts = torch.zeros(attn.n_head, dtype=torch.int32, device=attn.wqkv.weight.device)
    attn.register_buffer("step_counts", counts, persistent=False)


class FusedDecodeBlock(TransformerBlock):
    """A `TransformerBlock` whose one-token steps at fixed shapes (no `kv_len`) run `decode_block`;
    prefill and sized steps run the reference."""

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        if x.shape[:2] == (1, 1) and kv_len is None:
            return decode_block(self, x, rope.cos_table, rope.sin_table, input_pos)
        return super().forward(x, rope, mask, input_pos, kv_len)


class FusedHead(OutputHead):
    """The `OutputHead` with one token's logits from `decode_head`; longer inputs run the reference."""

    def forward(self, x: Tensor, norm: nn.Module, output: nn.Module | None, embedding: nn.Embedding) -> Tensor:
        if x.shape[:2] == (1, 1):
            return decode_head(x, norm, output, embedding)
        return super().forward(x, norm, output, embedding)
