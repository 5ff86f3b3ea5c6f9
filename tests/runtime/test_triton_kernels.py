"""Quill's Triton kernels (`runtime/kernels/gemv.py`, `runtime/kernels/decode_attention.py`,
`runtime/kernels/fused_decode.py`, `runtime/kernels/int8_matmul.py`) are correct.

They run on CUDA GPUs, which CI lacks; Triton's interpreter runs the same kernel code on CPU
tensors. It must be switched on before the kernels are compiled, so the checks run in a fresh
process (`triton_interpret_checks.py`, with TRITON_INTERPRET=1) and report one JSON line each.
Skipped where Triton is not installed (it is part of the test extra on Linux x86-64).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets import require_module


@pytest.fixture(autouse=True)
def _triton_installed():
    # A test dependency on Linux x86-64 (pyproject's `test` extra): missing fails under CI.
    require_module("triton", "`pip install -e '.[test]'` installs it on Linux x86-64")


SCRIPT = Path(__file__).with_name("triton_interpret_checks.py")


@pytest.fixture(scope="module")
def results() -> list[dict]:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=SCRIPT.parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _rows(results, kind):
    rows = [r for r in results if r["kind"] == kind]
    assert rows, f"no {kind} checks ran"
    return rows


def test_gemv_matches_matmul_for_float_and_int8_weights(results):
    for row in _rows(results, "gemv"):
        assert row["err"] <= row["tol"], row


def test_gemv_was_checked_on_shapes_that_do_not_divide_the_blocks(results):
    assert any(row["k"] % 64 for row in _rows(results, "gemv"))


def test_gemv_options_were_each_checked(results):
    variants = {row.get("variant") for row in _rows(results, "gemv")}
    assert {"reduce", "asm+reduce", "asm+v8", "asm+v8+unroll", "reduce+unroll", "asm+v8+sum8",
            "v8+sum8+unroll"} <= variants


def test_fused_gemv_steps_match_pytorch(results):
    rows = _rows(results, "fused_gemv")
    for row in rows:
        assert row["err"] <= row["tol"], row
    assert {row["variant"] for row in rows} == {"norm+bias+residual", "swiglu+residual", "int8 swiglu",
                                                   "int8 norm sum8"}


def test_attention_step_rotates_writes_the_cache_and_attends(results):
    rows = _rows(results, "step")
    for row in rows:
        assert row["err"] <= row["tol"], row
        assert row["cache_err"] == 0.0, row  # exactly the rotated key and the value, at input_pos only
    assert any(row["case"][6] < row["case"][2] for row in rows)  # partial rotary
    assert any(row["case"][5] for row in rows)  # a sliding window


def test_decode_attention_matches_masked_sdpa(results):
    rows = _rows(results, "attention")
    for row in rows:
        assert row["err"] <= row["tol"], row
    windows = [row["case"][5] for row in rows]
    assert any(windows) and None in windows  # sliding windows and full causal attention


def test_models_with_triton_kernels_match_transformers(results):
    rows = _rows(results, "model")
    for row in rows:
        assert row["changed"] > 0, row  # the kernels were really swapped in
        # Pre-norm SwiGLU families run every layer fused; Phi-2's parallel block keeps its path.
        assert row["fused_layers"] == (0 if row["model"] == "phi2" else row["layers"]), row
        assert row["fused_head"] == (row["model"] != "phi2"), row  # Phi-2's final norm is a LayerNorm
        assert row["decode_attention"] == row["layers"], row  # also inside the fused layers, for sized steps
        assert row["err"] <= row["tol"], row
        assert row["tokens_equal"], row


def test_int8_model_decodes_the_same_through_the_fused_layers(results):
    (row,) = _rows(results, "int8_model")
    assert row["fused_layers"] == row["layers"], row
    assert row["err"] <= row["tol"], row
    assert row["tokens_equal"], row


def test_int8_matmul_for_short_prompts_matches_the_widened_weight(results):
    rows = _rows(results, "int8_matmul")
    assert {row["m"] for row in rows} >= {1, 16, 64}
    for row in rows:
        assert row["err"] < row["tol"], row


def test_kernels_stay_off_without_cuda_or_the_interpreter():
    import torch

    from runtime.fast_paths import use_triton_kernels
    from runtime.kernels.gemv import INTERPRET
    from runtime.model import Transformer
    from runtime.config import ModelConfig

    from .tiny_models import tiny_hf_model

    if INTERPRET:
        pytest.skip("this process runs Triton's interpreter")
    _, cfg = tiny_hf_model("llama2")
    model = Transformer(ModelConfig.from_hf_config(cfg))
    model.setup_caches(1, 16)
    assert use_triton_kernels(model) == 0
    assert all(type(m) is torch.nn.Linear for m in model.modules() if isinstance(m, torch.nn.Linear))
