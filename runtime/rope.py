"""Rotary position embeddings in Hugging Face's rotate-half layout.

q and k keep Hugging Face's layout (the two halves of each rotated block are the real and imaginary
parts), so `cos`/`sin` tables are `cat(freqs, freqs)` as in transformers and the DirectML sample,
not gpt-fast's interleaved complex pairs. Only the first `rope_dim` dims of a head rotate (Phi-2's
partial rotary factor 0.4); the rest pass through.

Frequency variants: "default", "linear" (positions divided by a factor) and "llama3" (Llama 3.1's
wavelength-dependent smoothing, as in `modeling_rope_utils._compute_llama3_parameters`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import ModelConfig


def inv_frequencies(config: ModelConfig) -> Tensor:
    """[rope_dim // 2] float32 inverse frequencies, after any rope scaling."""
    dim = config.rope_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    inv_freq = 1.0 / (config.rope_base**exponents)
    scaling = dict(config.rope_scaling)
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif rope_type == "llama3":
        inv_freq = _llama3(inv_freq, scaling)
    return inv_freq


def _llama3(inv_freq: Tensor, scaling: dict) -> Tensor:
    factor = float(scaling["factor"])
    low_freq_factor = float(scaling["low_freq_factor"])
    high_freq_factor = float(scaling["high_freq_factor"])
    old_context_len = float(scaling["original_max_position_embeddings"])
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths are slowed down by `factor`, short ones kept, the band between blended.
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rope_cache(config: ModelConfig, max_seq_length: int, device=None) -> tuple[Tensor, Tensor]:
    """cos, sin tables [max_seq_length, rope_dim] in float32 (cast to the activations' dtype on use)."""
    inv_freq = inv_frequencies(config).to(device)
    t = torch.arange(max_seq_length, device=device, dtype=torch.int64).float()
    freqs = torch.outer(t, inv_freq)  # [S, rope_dim // 2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [S, rope_dim]
    return emb.cos(), emb.sin()


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: [B, H, S, head_dim]; cos/sin: [S, rope_dim] already in x's dtype."""
    rope_dim = cos.shape[-1]
    if rope_dim == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    x_rot, x_pass = x[..., :rope_dim], x[..., rope_dim:]
    x_rot = x_rot * cos + _rotate_half(x_rot) * sin
    return torch.cat((x_rot, x_pass), dim=-1)
