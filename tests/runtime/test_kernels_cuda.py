"""The decode kernels on a real GPU, at the shapes and block configs decode uses.

The interpreter checks (`test_triton_kernels.py`) run the kernels' Triton code on the CPU, but
not what only a GPU runs: the int8 widening by byte permutes is inline PTX, and vectorised loads,
dependent launch, atomics between programs and the register layouts exist only on the device.
Here every variant `gemv` can pick, at the real shapes of Phi-3-mini, Llama-2-7B and Llama-3-8B
layers, must match a float32 matmul of the same weights, and the attention step must match
SDPA from short to long contexts. Skipped without CUDA (see conftest.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu

# (n, k) of q/k/v, output, gate/up and down projections, and a vocabulary head.
SHAPES = {
    "phi-3-mini": [(9216, 3072), (3072, 3072), (16384, 3072), (3072, 8192), (32064, 3072)],
    "llama-2-7b": [(12288, 4096), (4096, 4096), (22016, 4096), (4096, 11008)],
    "llama-3-8b": [(6144, 4096), (28672, 4096), (4096, 14336)],
}
VARIANTS = [None, (8, 512, 4, "asm"), (8, 512, 4, "asm+reduce"), (16, 512, 4, "asm+reduce"),
            (8, 1024, 8, "asm"), (8, 512, 4, "reduce"), (4, 1024, 4, "reduce"), (2, 1024, 4, "asm+v8"),
            (8, 1024, 4, "asm+v8+unroll"), (8, 1024, 8, "asm+v8"), (8, 1024, 4, "asm+reduce"),
            (8, 1024, 4, "asm+v8+sum8"), (16, 512, 2, "asm+v8+sum8"), (4, 1024, 4, "asm+v8+sum8+unroll")]


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("model", sorted(SHAPES))
@pytest.mark.parametrize("int8", [True, False], ids=["int8", "bf16"])
def test_gemv_variants_match_float32_on_the_gpu(model, int8):
    from runtime.kernels.gemv import dependent_launch, gemv

    torch.manual_seed(0)
    dev = torch.device("cuda")
    pdl = dependent_launch(dev)
    for n, k in SHAPES[model]:
        if int8:
            w = torch.randint(-128, 128, (n, k), device=dev, dtype=torch.int8)
            s = torch.rand(n, device=dev, dtype=torch.bfloat16) * 0.01 + 0.001
            w_ref = w.float() * s.float()[:, None]
        else:
            w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
            s = None
            w_ref = w.float()
        x = torch.randn(k, device=dev, dtype=torch.bfloat16)
        gate_up = torch.randn(2 * k, device=dev, dtype=torch.bfloat16)
        g = torch.rand(k, device=dev, dtype=torch.bfloat16) + 0.5
        r = torch.randn(n, device=dev, dtype=torch.bfloat16)
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean() + 1e-5) * g.float()
        gated = F.silu(gate_up[:k].float()) * gate_up[k:].float()
        for config in VARIANTS if int8 else [v for v in VARIANTS if v is None or "asm" not in v[3]]:
            cases = {
                "plain": (gemv(x, w, s, config, pdl=pdl), w_ref @ xf),
                "norm": (gemv(x, w, s, config, rms_eps=1e-5, norm_weight=g, pdl=pdl), w_ref @ normed),
                "gated+residual": (gemv(gate_up, w, s, config, gated=True, residual=r, pdl=pdl),
                                   w_ref @ gated + r.float()),
            }
            for name, (out, ref) in cases.items():
                # One bf16 rounding of the output (2^-8) plus float32 sums in another order.
                assert _relative_error(out, ref) < 8e-3, (model, n, k, config, name)


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_int8_matmul_for_short_prompts_matches_float32_on_the_gpu(model):
    from runtime.kernels.int8_matmul import MAX_ROWS  # registers quill::int8_matmul

    torch.manual_seed(0)
    dev = torch.device("cuda")
    for n, k in SHAPES[model]:
        w = torch.randint(-128, 128, (n, k), device=dev, dtype=torch.int8)
        s = torch.rand(n, device=dev, dtype=torch.bfloat16) * 0.01 + 0.001
        for m in (1, 5, 16, 40, MAX_ROWS):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            ref = (x.float() @ w.float().T) * s.float()
            out = torch.ops.quill.int8_matmul(x, w, s)
            assert _relative_error(out, ref) < 8e-3, (model, m, n, k)


@pytest.mark.parametrize("shape", [(32, 32, 96, 4096, 2047), (32, 8, 128, 8192, None)],
                         ids=["phi-3-mini", "llama-3-8b"])
def test_attention_step_matches_sdpa_on_the_gpu(shape):
    from runtime.kernels.decode_attention import attention_step, decode_attention
    from runtime.rope import apply_rotary_emb

    heads, kv_heads, d, s_max, window = shape
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    angles = torch.rand(s_max, d // 2, device=dev, generator=g) * 6
    angles = torch.cat([angles, angles], dim=-1)
    cos_table, sin_table = angles.cos().bfloat16(), angles.sin().bfloat16()
    counts = torch.zeros(heads, dtype=torch.int32, device=dev)
    for pos in (0, 31, 100, 1600, 2500, s_max - 1):
        qkv = torch.randn(1, (heads + 2 * kv_heads) * d, device=dev, generator=g).bfloat16()
        k_cache = torch.randn(1, kv_heads, s_max, d, device=dev, generator=g).bfloat16()
        v_cache = torch.randn(1, kv_heads, s_max, d, device=dev, generator=g).bfloat16()
        q, k, v = (t.float().view(1, 1, -1, d).transpose(1, 2)
                   for t in qkv.split([heads * d, kv_heads * d, kv_heads * d], -1))
        cos, sin = cos_table[pos].float()[None], sin_table[pos].float()[None]
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        k_ref, v_ref = k_cache.float(), v_cache.float()
        k_ref[:, :, pos], v_ref[:, :, pos] = k[:, :, 0], v[:, :, 0]
        keys = torch.arange(s_max, device=dev)
        mask = keys <= pos
        if window:
            mask &= keys > pos - window
        ref = F.scaled_dot_product_attention(
            q, k_ref.repeat_interleave(heads // kv_heads, 1), v_ref.repeat_interleave(heads // kv_heads, 1),
            attn_mask=mask[None, None, None, :]).reshape(1, heads * d)
        # The unfused kernels (rotated q, the cache already written) first, on copies.
        unfused = decode_attention(q.bfloat16(), k_ref.bfloat16(), v_ref.bfloat16(),
                                   torch.tensor([pos], device=dev), window).reshape(1, heads * d)
        assert float((unfused.float() - ref).abs().max()) < 2e-2, pos
        out = attention_step(qkv, k_cache, v_cache, cos_table, sin_table, torch.tensor([pos], device=dev),
                             heads, window, counts)
        assert not counts.any(), pos
        assert float((out.float() - ref).abs().max()) < 2e-2, pos
        # The new key is written in bf16: within a rounding step of its size.
        torch.testing.assert_close(k_cache[:, :, pos].float(), k_ref[:, :, pos], rtol=2 ** -7, atol=1e-2)
        torch.testing.assert_close(v_cache[:, :, pos].float(), v_ref[:, :, pos], rtol=2 ** -7, atol=1e-2)
