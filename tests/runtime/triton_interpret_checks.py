"""Quill's Triton decode kernels run by Triton's interpreter on the CPU (no GPU needed).

Run as a script with TRITON_INTERPRET=1 (which must be set before Triton compiles the kernels,
hence a separate process: see test_triton_kernels.py). Prints one JSON object per check:

  gemv       `runtime.kernels.gemv.gemv` against `w @ x` for float32, bfloat16 and int8 weights, with
             shapes that do and do not divide the block sizes;
  fused_gemv the GEMV's fused prologues and epilogues (RMSNorm in front, SwiGLU in front, bias
             and residual behind) against the same steps in PyTorch, float32 and int8 weights;
  attention  `runtime.kernels.decode_attention` against SDPA under the model's causal / sliding-window
             mask: MHA, GQA, head sizes 64/80/96/128, windows, first and last cache positions;
  step       `attention_step` (rotary + cache write + attention from the q/k/v projection)
             against `apply_rotary_emb`, an indexed cache write and SDPA, partial rotary too;
  model      tiny random transformers models of `tiny_models.py`: Quill with
             `use_triton_kernels` (so the fused decode layers of `fused_decode.py` where they
             fit) against transformers, 6 greedy decode steps after a prompt
             longer than the sliding windows, float32. Four families that between them have
             GQA, sliding windows, a tied head, biases, partial rotary and a parallel block
             (the interpreter runs each kernel program in Python: all eight would take minutes);
  int8_model an int8 SmolLM2-shaped model through the fused layers against its unfused linears;
  int8_matmul `runtime.kernels.int8_matmul` (short prompts against int8 weights) against widening the
             weight, 1 to 64 rows, shapes that do and do not divide the blocks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


MODEL_CHECKS = ("mistral", "phi2", "smollm2", "phi3")


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def check_gemv() -> None:
    from runtime.kernels.gemv import gemv

    g = torch.Generator().manual_seed(0)
    for n, k in [(64, 256), (40, 96), (8, 2048), (6, 4096), (33, 1100)]:
        x = torch.randn(k, generator=g)
        w = torch.randn(n, k, generator=g)
        ref = w @ x
        emit(kind="gemv", dtype="float32", n=n, k=k, err=float((gemv(x, w) - ref).abs().max()),
             tol=1e-4 * k ** 0.5)
        xb, wb = x.bfloat16(), w.bfloat16()
        ref_b = wb.float() @ xb.float()
        # The output is rounded to bf16 once: at most one bf16 step of the largest value.
        emit(kind="gemv", dtype="bfloat16", n=n, k=k, err=float((gemv(xb, wb).float() - ref_b).abs().max()),
             tol=float(ref_b.abs().max()) * 2 ** -7)
        w8 = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
        s = torch.rand(n, generator=g) * 0.01
        ref8 = (w8.float() @ x) * s
        emit(kind="gemv", dtype="int8", n=n, k=k, err=float((gemv(x, w8, s) - ref8).abs().max()),
             tol=1e-5 * k ** 0.5)
        # The kernel's options (see gemv._config), blocks small enough to loop over these shapes.
        for config in ((4, 64, 4, "reduce"), (8, 32, 4, "reduce"), (2, 128, 4, "asm+reduce"), (2, 64, 2, "asm+v8"),
                       (4, 64, 2, "asm+v8+unroll"), (8, 32, 1, "reduce+unroll"), (4, 64, 2, "asm+v8+sum8"),
                       (2, 32, 1, "v8+sum8+unroll")):
            emit(kind="gemv", dtype="int8", variant=config[3], n=n, k=k,
                 err=float((gemv(x, w8, s, config) - ref8).abs().max()), tol=1e-5 * k ** 0.5)


def check_fused_gemv() -> None:
    from runtime.kernels.gemv import gemv

    g = torch.Generator().manual_seed(2)
    for n, k in [(64, 256), (33, 1100), (8, 2048)]:
        x = torch.randn(k, generator=g)
        w = torch.randn(n, k, generator=g)
        norm_w = torch.rand(k, generator=g) + 0.5
        bias, residual = torch.randn(n, generator=g), torch.randn(n, generator=g)
        ref = w @ (x * torch.rsqrt(x.pow(2).mean() + 1e-5) * norm_w) + bias + residual
        out = gemv(x, w, bias=bias, residual=residual, rms_eps=1e-5, norm_weight=norm_w)
        tol = 1e-4 * k ** 0.5
        emit(kind="fused_gemv", variant="norm+bias+residual", n=n, k=k, err=float((out - ref).abs().max()), tol=tol)
        gate_up = torch.randn(2 * k, generator=g)
        act = F.silu(gate_up[:k]) * gate_up[k:]
        out = gemv(gate_up, w, gated=True, residual=residual)
        emit(kind="fused_gemv", variant="swiglu+residual", n=n, k=k,
             err=float((out - (w @ act + residual)).abs().max()), tol=tol)
        w8 = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
        s = torch.rand(n, generator=g) * 0.01
        out = gemv(gate_up, w8, s, gated=True)
        emit(kind="fused_gemv", variant="int8 swiglu", n=n, k=k,
             err=float((out - (w8.float() @ act) * s).abs().max()), tol=1e-5 * k ** 0.5)
        # int8 with RMSNorm in front, row sums 8 columns a thread at a time (Phi-3-mini's q/k/v)
        out = gemv(x, w8, s, (4, 64, 2, "asm+v8+sum8"), rms_eps=1e-5, norm_weight=norm_w)
        ref8 = (w8.float() @ (x * torch.rsqrt(x.pow(2).mean() + 1e-5) * norm_w)) * s
        emit(kind="fused_gemv", variant="int8 norm sum8", n=n, k=k, err=float((out - ref8).abs().max()),
             tol=1e-5 * k ** 0.5)


def reference_attention(q, k_cache, v_cache, pos: int, window: int | None):
    """SDPA of q [1, H, 1, D] over the caches [1, KVH, S, D] under the model's mask."""
    groups = q.shape[1] // k_cache.shape[1]
    kv_pos = torch.arange(k_cache.shape[2])
    mask = kv_pos <= pos
    if window:
        mask &= kv_pos > pos - window
    return F.scaled_dot_product_attention(
        q, k_cache.repeat_interleave(groups, 1), v_cache.repeat_interleave(groups, 1),
        attn_mask=mask[None, None, None, :])


def check_attention_step() -> None:
    from runtime.kernels.decode_attention import attention_step
    from runtime.rope import apply_rotary_emb

    g = torch.Generator().manual_seed(4)
    cases = [  # heads, kv heads, head size, cache positions, query position, window, rotary dims
        (4, 2, 64, 256, 100, None, 64), (4, 4, 80, 128, 70, None, 32), (6, 3, 96, 300, 250, 64, 96),
        (4, 1, 64, 512, 511, None, 64), (4, 4, 64, 128, 0, None, 64),
        # Long enough that each split walks several blocks; a window that starts mid-block.
        (4, 2, 64, 2048, 1500, None, 64), (2, 2, 96, 1024, 900, 300, 96),
    ]
    for h, kvh, d, s_max, pos, window, rope_dim in cases:
        qkv = torch.randn(1, (h + 2 * kvh) * d, generator=g)
        k_cache = torch.randn(1, kvh, s_max, d, generator=g)  # junk everywhere, as after other prompts
        v_cache = torch.randn(1, kvh, s_max, d, generator=g)
        angles = torch.rand(s_max, rope_dim // 2, generator=g) * 6
        angles = torch.cat([angles, angles], dim=-1)  # whole tables [S_max, rope_dim]
        cos_table, sin_table = angles.cos(), angles.sin()
        cos, sin = cos_table[pos], sin_table[pos]
        q, k, v = (t.view(1, 1, -1, d).transpose(1, 2) for t in qkv.split([h * d, kvh * d, kvh * d], -1))
        q, k = apply_rotary_emb(q, cos[None], sin[None]), apply_rotary_emb(k, cos[None], sin[None])
        k_ref, v_ref = k_cache.clone(), v_cache.clone()
        k_ref[:, :, pos], v_ref[:, :, pos] = k[:, :, 0], v[:, :, 0]
        ref = reference_attention(q, k_ref, v_ref, pos, window).reshape(1, h * d)
        counts = torch.zeros(h, dtype=torch.int32)
        out = attention_step(qkv, k_cache, v_cache, cos_table, sin_table, torch.tensor([pos]), h, window, counts)
        assert not counts.any(), "the finished-chunk counts must be left at zero for the next step"
        cache_err = max(float((k_cache - k_ref).abs().max()), float((v_cache - v_ref).abs().max()))
        emit(kind="step", case=[h, kvh, d, s_max, pos, window, rope_dim],
             err=float((out - ref).abs().max()), cache_err=cache_err, tol=1e-5)


def check_attention() -> None:
    from runtime.kernels.decode_attention import decode_attention

    g = torch.Generator().manual_seed(1)
    cases = [  # heads, kv heads, head size, cache positions, query position, window
        (4, 4, 64, 256, 0, None), (4, 4, 96, 300, 150, None), (8, 2, 80, 200, 199, None),
        (4, 2, 64, 512, 300, 12), (4, 1, 128, 4096, 2047, None), (6, 3, 64, 128, 64, 64),
    ]
    for h, kvh, d, s_max, pos, window in cases:
        q = torch.randn(1, h, 1, d, generator=g)
        k = torch.randn(1, kvh, s_max, d, generator=g)
        v = torch.randn(1, kvh, s_max, d, generator=g)
        ref = reference_attention(q, k, v, pos, window)
        out = decode_attention(q, k, v, torch.tensor([pos]), window)
        emit(kind="attention", case=[h, kvh, d, s_max, pos, window], err=float((out - ref).abs().max()),
             tol=1e-5)


@torch.no_grad()
def check_models() -> None:
    from runtime.fast_paths import use_triton_kernels
    from runtime.config import ModelConfig
    from runtime.kernels.decode_attention import DecodeAttention
    from runtime.kernels.fused_decode import FusedDecodeBlock, FusedHead
    from runtime.model import Transformer
    from runtime.weight_map import hf_to_native
    from tests.runtime.tiny_models import tiny_hf_model

    prompt_len, steps = 28, 6  # the decode steps cross from the first 32-position chunk into the second
    for name in MODEL_CHECKS:
        hf_model, cfg = tiny_hf_model(name)
        config = ModelConfig.from_hf_config(cfg)
        model = Transformer(config).eval()
        model.load_state_dict(hf_to_native(hf_model.state_dict(), config), strict=True)
        model.setup_caches(1, 64)
        changed = use_triton_kernels(model)
        fused = sum(isinstance(layer, FusedDecodeBlock) for layer in model.layers)
        attention = sum(isinstance(layer.attention, DecodeAttention) for layer in model.layers)
        ids = torch.randint(3, 256, (1, prompt_len), generator=torch.Generator().manual_seed(3))
        hf_logits = hf_model(ids, use_cache=True)
        past = hf_logits.past_key_values
        ours = model(ids, torch.arange(prompt_len))[:, -1]
        ref = hf_logits.logits[:, -1]
        err, same = 0.0, True
        for i in range(steps):
            err = max(err, float((ours - ref).abs().max()))
            token = ref.argmax(-1, keepdim=True)
            same &= bool(token.equal(ours.argmax(-1, keepdim=True)))
            out = hf_model(token, past_key_values=past, use_cache=True)
            past, ref = out.past_key_values, out.logits[:, -1]
            ours = model(token, torch.tensor([prompt_len + i]))[:, -1]
        emit(kind="model", model=name, changed=changed, fused_layers=fused, decode_attention=attention,
             fused_head=isinstance(model.head, FusedHead), layers=len(model.layers), err=err,
             tokens_equal=same, tol=1e-4)


@torch.no_grad()
def check_int8_model() -> None:
    """An int8 model decodes the same through the fused layers (int8 GEMV, SwiGLU in its own
    kernel) as through its unfused linears; the CPU has no int8 GEMV, so it is switched on."""
    import copy

    from runtime.fast_paths import use_triton_kernels
    from runtime.config import ModelConfig
    from runtime.kernels.fused_decode import FusedDecodeBlock
    from runtime.model import Transformer
    from runtime.quantize import Int8Linear, quantize
    from tests.runtime.tiny_models import tiny_hf_model

    _, cfg = tiny_hf_model("smollm2")
    torch.manual_seed(5)
    model = Transformer(ModelConfig.from_hf_config(cfg)).eval()
    model.setup_caches(1, 64)
    quantize(model, "int8")
    fused = copy.deepcopy(model)
    for m in fused.modules():
        if isinstance(m, Int8Linear):
            m.use_int8_gemv = True
    use_triton_kernels(fused)
    layers = sum(isinstance(layer, FusedDecodeBlock) for layer in fused.layers)
    ids = torch.randint(3, 256, (1, 12), generator=torch.Generator().manual_seed(6))
    ref = model(ids, torch.arange(12))[:, -1]
    ours = fused(ids, torch.arange(12))[:, -1]
    err, same = 0.0, True
    for i in range(5):
        token = ref.argmax(-1, keepdim=True)
        same &= bool(token.equal(ours.argmax(-1, keepdim=True)))
        ref = model(token, torch.tensor([12 + i]))[:, -1]
        ours = fused(token, torch.tensor([12 + i]))[:, -1]
        err = max(err, float((ours - ref).abs().max()))
    emit(kind="int8_model", fused_layers=layers, layers=len(fused.layers), err=err, tokens_equal=same, tol=1e-3)


def check_int8_matmul() -> None:
    from runtime.kernels.int8_matmul import int8_matmul

    g = torch.Generator().manual_seed(7)
    for m, n, k, config in [(1, 48, 64, None), (5, 40, 96, None), (16, 64, 256, (16, 16, 64, 4, 2)),
                            (33, 20, 300, (64, 16, 128, 4, 3)), (64, 32, 512, None)]:
        x = torch.randn(m, k, generator=g)
        w = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
        s = torch.rand(n, generator=g) * 0.01
        ref = (x @ w.float().T) * s
        emit(kind="int8_matmul", m=m, n=n, k=k, err=float((int8_matmul(x, w, s, config) - ref).abs().max()),
             tol=1e-5 * k ** 0.5)


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1")
    check_gemv()
    check_fused_gemv()
    check_attention()
    check_attention_step()
    check_models()
    check_int8_model()
    check_int8_matmul()
