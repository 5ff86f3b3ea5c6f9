"""One gpt-fast-style transformer for every supported family, configured by `ModelConfig`.

Follows gpt-fast's `model.py`: fused `wqkv` and `w13` projections, a static KV cache owned by each
attention layer, `forward(idx, input_pos)` with the positions being written. What differs between
families is read from the config, never from a name:

    llama / phi3   x = x + attn(rms(x));  x = x + w2(silu(w1 x) * w3 x)      (sequential)
    phi            h = ln(x);  x = x + attn(h) + fc2(gelu(fc1 h))            (parallel block)

plus per-config details: GQA (KVH < H), q/k/v bias (Qwen2, Phi-2), partial rotary (Phi-2), sliding
window per layer (Mistral, Phi-3), tied embeddings (SmolLM2, Qwen2), an lm_head bias (Phi-2).

Attention reads the whole static cache under a boolean mask built from `input_pos`, so decode
runs with fixed shapes and no host syncs (ready for CUDA graphs); `kv_len` narrows it to the
filled part where shapes may change. SDPA's `enable_gqa` exists from torch 2.5; on torch 2.4 k/v
heads are expanded with `repeat_interleave`.

This is the plain PyTorch reference on every device. Faster paths (`runtime/fast_paths.py`)
replace its modules with subclasses, as quantization replaces its linears; nothing here knows
about them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .kv_cache import KVCache
from .rope import apply_rotary_emb, rope_cache

_SDPA_HAS_GQA = torch.__version__ >= (2, 5)


def _activation(name: str):
    if name == "silu":
        return F.silu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu


class Rope(NamedTuple):
    """The rotary tables of one forward, gathered once for every layer: `cos`/`sin` at its
    positions [S, rope_dim], which the reference applies, and the whole tables `cos_table`/
    `sin_table` [S_max, rope_dim], for a replacement layer whose kernel indexes them by
    `input_pos` itself."""

    cos: Tensor
    sin: Tensor
    cos_table: Tensor
    sin_table: Tensor


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in float32 like transformers, then scale in the model dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, window: int | None):
        super().__init__()
        self.n_head = config.n_head
        self.n_local_heads = config.n_local_heads
        self.head_dim = config.head_dim
        self.window = window
        q_size = config.n_head * config.head_dim
        kv_size = config.n_local_heads * config.head_dim
        self.split = [q_size, kv_size, kv_size]
        self.wqkv = nn.Linear(config.dim, q_size + 2 * kv_size, bias=config.qkv_bias)
        self.wo = nn.Linear(q_size, config.dim, bias=config.out_bias)
        self.kv_cache: KVCache | None = None

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        q, k, v = self.heads(x)
        q, k = self.rotate(q, k, rope)
        k, v = self.kv_cache.update(input_pos, k, v)  # [B, KVH, S_max, Dh]
        if kv_len is not None:
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]  # [B, KVH, kv_len, Dh]
        return self.wo(self.attend(q, k, v, mask))  # [B, S, D]

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, S, D] -> q [B, H, S, Dh], k and v [B, KVH, S, Dh]."""
        bsz, seqlen, _ = x.shape
        q, k, v = self.wqkv(x).split(self.split, dim=-1)
        q = q.view(bsz, seqlen, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(bsz, seqlen, self.n_local_heads, self.head_dim).transpose(1, 2)
        v = v.view(bsz, seqlen, self.n_local_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def rotate(self, q: Tensor, k: Tensor, rope: Rope) -> tuple[Tensor, Tensor]:
        return apply_rotary_emb(q, rope.cos, rope.sin), apply_rotary_emb(k, rope.cos, rope.sin)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """q [B, H, S, Dh] over the cache k, v [B, KVH, S_kv, Dh] under mask -> [B, S, H * Dh]."""
        bsz, _, seqlen, _ = q.shape
        groups = self.n_head // self.n_local_heads
        if groups > 1 and _SDPA_HAS_GQA:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        else:
            if groups > 1:
                k = k.repeat_interleave(groups, dim=1)  # [B, H, S_kv, Dh]
                v = v.repeat_interleave(groups, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return y.transpose(1, 2).reshape(bsz, seqlen, self.n_head * self.head_dim)


class FeedForward(nn.Module):
    """Gated MLP (SwiGLU): w13 holds the gate rows, then the up rows."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.hidden = config.intermediate_size
        self.w13 = nn.Linear(config.dim, 2 * self.hidden, bias=config.mlp_bias)
        self.w2 = nn.Linear(self.hidden, config.dim, bias=config.mlp_bias)
        self.act = _activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).split([self.hidden, self.hidden], dim=-1)
        return self.w2(self.act(gate) * up)


class PhiMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.intermediate_size, bias=config.mlp_bias)
        self.w2 = nn.Linear(config.intermediate_size, config.dim, bias=config.mlp_bias)
        self.act = _activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.act(self.w1(x)))


def _norm(config: ModelConfig) -> nn.Module:
    if config.norm_type == "layer":
        return nn.LayerNorm(config.dim, eps=config.norm_eps)
    return RMSNorm(config.dim, config.norm_eps)


class TransformerBlock(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.parallel = config.parallel_block
        self.attention = Attention(config, config.layer_windows[layer_idx])
        self.attention_norm = _norm(config)
        if self.parallel:
            self.feed_forward = PhiMLP(config)
        else:
            self.feed_forward = FeedForward(config)
            self.ffn_norm = _norm(config)

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        h = self.attention_norm(x)
        if self.parallel:
            return x + self.attention(h, rope, mask, input_pos, kv_len) + self.feed_forward(h)
        x = x + self.attention(h, rope, mask, input_pos, kv_len)
        return x + self.feed_forward(self.ffn_norm(x))


class OutputHead(nn.Module):
    """Logits from hidden states: the final norm, then the vocabulary projection (`output`, or
    with tied embeddings the embedding matrix). It holds no weights, so the model's `norm`,
    `output` and `tok_embeddings` keep theirs under their own state-dict keys, and the two steps
    can be replaced as one module."""

    def forward(self, x: Tensor, norm: nn.Module, output: nn.Module | None, embedding: nn.Embedding) -> Tensor:
        x = norm(x)
        if output is None:
            return F.linear(x, embedding.weight)  # [B, S, V]
        return output(x)  # [B, S, V]


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layer))
        self.norm = _norm(config)
        self.output = None
        if not config.tie_word_embeddings:
            self.output = nn.Linear(config.dim, config.vocab_size, bias=config.output_bias)
        self.windows = sorted({w for w in config.layer_windows if w is not None})
        self.max_batch_size = -1
        self.max_seq_length = -1
        self.head = OutputHead()

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        """Allocate the KV caches and rope tables on the weights' device and dtype."""
        weight = self.tok_embeddings.weight
        dtype, device = weight.dtype, weight.device
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        for layer in self.layers:
            attn = layer.attention
            attn.kv_cache = KVCache(
                max_batch_size, max_seq_length, attn.n_local_heads, attn.head_dim, dtype=dtype, device=device
            )
        cos, sin = rope_cache(self.config, max_seq_length, device=device)
        # Computed in float32 and rounded once to the model dtype, as transformers does per step.
        self.register_buffer("rope_cos", cos.to(dtype), persistent=False)  # [S_max, rope_dim]
        self.register_buffer("rope_sin", sin.to(dtype), persistent=False)
        self.register_buffer("kv_positions", torch.arange(max_seq_length, device=device), persistent=False)

    def _masks(self, input_pos: Tensor, kv_len: int | None) -> dict[int | None, Tensor]:
        """Boolean masks [1, 1, S, S_kv]: causal, and causal within each sliding window W."""
        q_pos = input_pos[:, None]  # [S, 1]
        kv_pos = self.kv_positions[None, :kv_len]  # [1, S_kv]
        causal = kv_pos <= q_pos
        masks = {None: causal[None, None]}
        for w in self.windows:
            # Like transformers: a query at position p sees keys p - W + 1 .. p.
            masks[w] = (causal & (kv_pos > q_pos - w))[None, None]
        return masks

    def forward(
        self, idx: Tensor, input_pos: Tensor, *, last_only: bool = False, kv_len: int | None = None
    ) -> Tensor:
        """idx [B, S] token ids written at positions input_pos [S]; returns logits [B, S, V]
        ([B, 1, V] with `last_only`, which prefill uses to skip the rest of the vocab projection).

        `kv_len` (a host int > every position in input_pos) limits attention to the first kv_len
        cache entries instead of all S_max: less work, but shapes that change from call to call.
        Leave it None for fixed shapes (CUDA graphs)."""
        if self.max_seq_length < 0:
            raise RuntimeError("call setup_caches() before forward()")
        masks = self._masks(input_pos, kv_len)
        rope = Rope(self.rope_cos[input_pos], self.rope_sin[input_pos], self.rope_cos, self.rope_sin)
        x = self.tok_embeddings(idx)  # [B, S, D]
        for layer in self.layers:
            x = layer(x, rope, masks[layer.attention.window], input_pos, kv_len)
        if last_only:
            x = x[:, -1:]
        return self.head(x, self.norm, self.output, self.tok_embeddings)  # [B, S, V]
