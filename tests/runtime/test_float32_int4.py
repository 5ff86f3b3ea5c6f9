"""float32-int4, the CPU default for 4-bit GGUF models: float32 activations, weights kept as their
4-bit codes. It must give float32's answers: the codes reproduce a Q4_1 model's weights bit for
bit, and greedy tokens equal plain float32's on the real SmolLM2 weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runtime.quantize import GridInt4Linear, four_bit_grid, quantize_float32_int4


def q4_1_like(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """w = d * q + m per block of 32, d and m in float16 (as a Q4_1 GGUF stores them); some
    blocks use only a few of the 16 levels."""
    g = torch.Generator().manual_seed(seed)
    d = (torch.rand(n, k // 32, 1, generator=g) * 0.01 + 1e-4).half().float()
    m = (torch.randn(n, k // 32, 1, generator=g) * 0.05).half().float()
    q = torch.randint(0, 16, (n, k // 32, 32), generator=g).float()
    q[:, ::7] = torch.randint(3, 9, (n, k // 32, 32), generator=g)[:, ::7].float()  # levels 3..8 only
    return (d * q + m).reshape(n, k)


def test_four_bit_grid_gives_back_q4_1_weights_bit_for_bit():
    w = q4_1_like(96, 256)
    codes, scales, zeros = four_bit_grid(w)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 15
    deq = (codes.view(96, -1, 32).float() * scales[..., None] + zeros[..., None]).view(96, 256)
    assert torch.equal(deq, w)


def test_packed_codes_unpack_to_the_same_codes_and_weights():
    w = q4_1_like(16, 128, seed=3)
    layer = GridInt4Linear.from_linear(_linear(w))
    assert layer.packed.shape == (16, 64)  # two codes a byte
    assert torch.equal(layer.codes(), four_bit_grid(w)[0])
    assert torch.equal(layer.dequantize(), w)


@pytest.mark.parametrize("n", [12, 10])  # 10 rows: not a multiple of 4, the PyTorch expression
def test_compiled_decode_row_equals_eager(n):
    w = q4_1_like(n, 96, seed=5)
    layer = GridInt4Linear.from_linear(_linear(w))
    if n % 4:
        assert not layer.use_kernel
    x = torch.randn(1, 1, 96, generator=torch.Generator().manual_seed(6))
    compiled = torch.compile(layer, fullgraph=True)
    with torch.no_grad():
        want = layer(x)  # eager: the float32 matmul of the dequantized weights
        got = compiled(x)
    assert got.shape == (1, 1, n)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _linear(w: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


def test_weights_off_the_grid_are_refused():
    assert four_bit_grid(torch.randn(64, 128)) is None
    w = q4_1_like(64, 128)
    w[5, 40] += 1e-3  # one weight between two levels of its block
    assert four_bit_grid(w) is None


def test_grid_linear_equals_float32_linear_for_long_inputs():
    """More rows than the kernel takes (a whole file's prefill): the float32 matmul of the
    dequantized weights, float32's result bit for bit."""
    from runtime.kernels import grid_int4_cpu

    lin = nn.Linear(256, 96, bias=True)
    with torch.no_grad():
        lin.weight.copy_(q4_1_like(96, 256, seed=1))
    x = torch.randn(1, grid_int4_cpu.MAX_ROWS_OF_X + 1, 256)
    assert torch.equal(GridInt4Linear.from_linear(lin)(x), lin(x))


def test_grid_linear_short_inputs_go_through_the_kernel():
    """A few rows (decode, typed characters, draft verification) use the C++ kernel, eager too:
    close to float32, and each row the same as that row alone."""
    from runtime.kernels import grid_int4_cpu

    if not grid_int4_cpu.available():
        pytest.fail("the C++ kernel did not build; Inductor's compiler is part of the test setup")
    lin = nn.Linear(256, 96, bias=True)
    with torch.no_grad():
        lin.weight.copy_(q4_1_like(96, 256, seed=2))
    layer = GridInt4Linear.from_linear(lin)
    x = torch.randn(1, 5, 256)
    with torch.no_grad():
        got, want = layer(x), lin(x)
        one = torch.cat([layer(x[:, i : i + 1]) for i in range(5)], dim=1)
    assert not torch.equal(got, want)  # a different order of float32 sums: the kernel ran
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(one, got)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from runtime.store import resolve_model
    from tests.assets import smollm2_gguf

    return resolve_model(str(smollm2_gguf()), cache_dir=tmp_path_factory.mktemp("quill-cache"))


@pytest.mark.slow
def test_real_smollm2_q4_1_linears_come_back_exactly(checkpoint):
    """Every linear of the real model is Q4_1 in its GGUF: all of them are on the grid, exactly;
    the tied head (the Q8_0 embedding table) is not."""
    from runtime.engine import Engine

    model = Engine.load(checkpoint, device="cpu", precision="float32", compile=False, max_seq_length=64).model
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * model.config.n_layer
    for lin in linears[:8] + linears[-4:]:
        assert GridInt4Linear.from_linear(lin) is not None
    assert four_bit_grid(model.tok_embeddings.weight[:2048]) is None


@pytest.mark.slow
def test_real_smollm2_auto_on_cpu_is_float32_int4_with_float32_tokens(checkpoint):
    """Greedy tokens of `precision="auto"` on the CPU (eager here: each step and the short
    prompts run the C++ kernel on this CPU's path) equal plain float32's; benchmarks/cpu.py
    checks the compiled decode on all 10 prompts."""
    import sys
    from pathlib import Path

    from runtime.workloads import untokenized
    from runtime.engine import Engine, GenerationConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from cpu import AGREEMENT_PROMPTS

    ref = Engine.load(checkpoint, device="cpu", precision="float32", max_seq_length=256)
    fast = Engine.load(checkpoint, device="cpu", compile=False, max_seq_length=256)
    assert fast.dtype == "float32-int4"
    from runtime.kernels import grid_int4_cpu

    assert fast.cpu_kernel == grid_int4_cpu.kernel_path() and ref.cpu_kernel.startswith("aten-")
    assert not any(isinstance(m, nn.Linear) for m in fast.model.layers.modules())
    for text in AGREEMENT_PROMPTS[:3]:
        ids = ref.tokenizer.encode(text)
        want = untokenized(ref).generate(ids, GenerationConfig(max_new_tokens=32)).token_ids
        got = untokenized(fast).generate(ids, GenerationConfig(max_new_tokens=32)).token_ids
        assert got == want, text


def test_quantize_float32_int4_leaves_off_grid_models_alone():
    from tests.runtime.test_quantize import tiny

    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert quantize_float32_int4(model) is False
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
