"""int8 weight-only quantization keeps the real SmolLM2's greedy choices of bfloat16 (issue 7).

The int8 path is the GPU's fast precision; its kernels differ by device but the weights are the
same, so the check of what quantization changes runs here on the CPU: 10 prompts (those of
`benchmarks/cpu.py`), a 32-token float32 continuation of each, and at every continuation
position the argmax of the int8 model against the bfloat16 model, given the same context
(teacher forcing). Free-running greedy continuations are not compared token for token: SmolLM2
has near-tied logits, and the first flip changes everything after it (bfloat16 itself keeps only
4-6 of 10 float32 continuations whole). Measured: 306 of 320 positions (95.6%).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


@torch.no_grad()
def test_int8_picks_the_bfloat16_token_at_90_percent_of_positions(tmp_path_factory):
    from runtime.workloads import untokenized
    from runtime.engine import Engine, GenerationConfig
    from runtime.quantize import Int8Linear, quantize
    from runtime.store import resolve_model
    from tests.assets import smollm2_gguf

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from cpu import AGREEMENT_PROMPTS

    ckpt = resolve_model(str(smollm2_gguf()), cache_dir=tmp_path_factory.mktemp("quill-cache"))
    ref = Engine.load(ckpt, device="cpu", precision="float32", max_seq_length=256, compile=False)
    bf16 = Engine.load(ckpt, device="cpu", precision="bfloat16", max_seq_length=256, compile=False)
    int8 = Engine.load(ckpt, device="cpu", precision="bfloat16", max_seq_length=256, compile=False)
    quantize(int8.model, "int8")
    assert sum(isinstance(m, Int8Linear) for m in int8.model.modules()) == 30 * 4 + 1  # + the head

    agree = total = 0
    for text in AGREEMENT_PROMPTS:
        ids = ref.tokenizer.encode(text)
        cont = untokenized(ref).generate(ids, GenerationConfig(max_new_tokens=32)).token_ids
        seq = torch.tensor([ids + cont])
        positions = torch.arange(seq.shape[1])
        want = bf16.model(seq, positions)[0, len(ids) - 1:-1].argmax(-1)
        got = int8.model(seq, positions)[0, len(ids) - 1:-1].argmax(-1)
        agree += int((want == got).sum())
        total += want.numel()
    print(f"int8 vs bfloat16: {agree} of {total} positions")
    assert total == 32 * len(AGREEMENT_PROMPTS)
    assert agree >= 0.9 * total, (agree, total)
