"""One gpt-fast-style transformer for every supported family, configured by `ModelConfig`.

Follows gpt-fast's `model.py`: fused `wqkv` and `w13` projections, a static KV cache owned by each
attention layer, `forward(idx, input_pos)` with the positions being written. What differs between
families is read from the config, never from a name:

    llama / phi3   x = x + attn(rms(x));  x = x + w2(silu(w1 x) * w3 x)      (sequential)
    phi            h = ln(x);  x = x + attn(h) + fc2(gelu(fc1 h))            (parallel block)

plus per-config details: GQA (KVH < H), q/k/v bias (Qwen2, Phi-2), partial rotary (Phi-2), sliding
window per layer (Mistral, Phi-3), tied embeddings (SmolLM2, Qwen2), an lm_head bias (Phi-2).

Attention always reads the whole static cache under a boolean mask built from `input_pos`, so
decode runs with fixed shapes and no host syncs (ready for CUDA graphs). SDPA's `enable_gqa`
exists from torch 2.5; on torch 2.4 k/v heads are expanded with `repeat_interleave`.
"""

from __future__ import annotations

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


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.dml = None  # DirectMLOps when running on DirectML

    def forward(self, x: Tensor) -> Tensor:
        if self.dml is not None and self.dml.rmsnorm is not None:
            return self.dml.rms_norm(x, self.weight, self.eps)
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
        self.dml = None
        # A fused decode attention (runtime/decode_attention.py) that reads only the filled
        # cache positions; set by `compile.use_triton_kernels` on CUDA.
        self.decode_kernel = None

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        bsz, seqlen, _ = x.shape  # [B, S, D]
        q, k, v = self.wqkv(x).split(self.split, dim=-1)
        q = q.view(bsz, seqlen, self.n_head, self.head_dim).transpose(1, 2)  # [B, H, S, Dh]
        k = k.view(bsz, seqlen, self.n_local_heads, self.head_dim).transpose(1, 2)  # [B, KVH, S, Dh]
        v = v.view(bsz, seqlen, self.n_local_heads, self.head_dim).transpose(1, 2)

        if self.dml is not None and self.dml.rotary is not None:
            q, k = self.dml.apply_rotary(q, k, cos, sin, input_pos)  # full tables
        else:
            q = apply_rotary_emb(q, cos, sin)
            k = apply_rotary_emb(k, cos, sin)

        k, v = self.kv_cache.update(input_pos, k, v)  # [B, KVH, S_max, Dh]
        if self.decode_kernel is not None and seqlen == 1 and kv_len is None:
            y = self.decode_kernel(q, k, v, input_pos, self.window)  # [B, H, 1, Dh]
            return self.wo(y.transpose(1, 2).reshape(bsz, 1, self.n_head * self.head_dim))
        if kv_len is not None:
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]  # [B, KVH, kv_len, Dh]
        y = self._attend(q, k, v, mask, input_pos)  # [B, S, H * Dh]
        return self.wo(y)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, input_pos: Tensor) -> Tensor:
        bsz, _, seqlen, _ = q.shape
        groups = self.n_head // self.n_local_heads
        use_dml = self.dml is not None and self.dml.attention is not None
        if groups > 1 and (use_dml or not _SDPA_HAS_GQA):
            k = k.repeat_interleave(groups, dim=1)  # [B, H, S_max, Dh]
            v = v.repeat_interleave(groups, dim=1)
        if use_dml:
            return self.dml.multi_head_attention(q, k, v, mask, input_pos)
        if groups > 1 and _SDPA_HAS_GQA:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        else:
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
        # The whole layer's batch-1 decode in five kernels (runtime/fused_decode.py); set by
        # `compile.use_triton_kernels` on CUDA for the blocks it fits. Called by
        # `Transformer.forward` with the whole rotary tables instead of `forward`.
        self.decode_step = None

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, input_pos: Tensor, kv_len: int | None = None
    ) -> Tensor:
        h = self.attention_norm(x)
        if self.parallel:
            return x + self.attention(h, cos, sin, mask, input_pos, kv_len) + self.feed_forward(h)
        x = x + self.attention(h, cos, sin, mask, input_pos, kv_len)
        return x + self.feed_forward(self.ffn_norm(x))


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
        self.dml = None
        self.decode_head = None  # final norm + vocabulary GEMV in one kernel (fused_decode.py)

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

    def use_directml_ops(self, ops) -> None:
        """Route RMSNorm, RoPE and attention through DirectML's fused kernels (`directml_ops`)."""
        self.dml = ops
        for module in self.modules():
            if isinstance(module, (RMSNorm, Attention)):
                module.dml = ops

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
        if self.dml is not None and self.dml.rotary is not None:
            cos, sin = self.rope_cos, self.rope_sin  # the fused kernel indexes them itself
        else:
            cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]  # [S, rope_dim]
        x = self.tok_embeddings(idx)  # [B, S, D]
        one_token = x.shape[:2] == (1, 1) and kv_len is None
        for layer in self.layers:
            if one_token and layer.decode_step is not None:
                x = layer.decode_step(layer, x, self.rope_cos, self.rope_sin, input_pos)
            else:
                x = layer(x, cos, sin, masks[layer.attention.window], input_pos, kv_len)
        if last_only:
            x = x[:, -1:]
        if self.decode_head is not None and x.shape[:2] == (1, 1):
            return self.decode_head(self, x)
        x = self.norm(x)
        if self.output is None:
            return F.linear(x, self.tok_embeddings.weight)  # [B, S, V]
        return self.output(x)  # [B, S, V]
