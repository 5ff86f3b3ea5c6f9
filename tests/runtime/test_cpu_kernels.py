"""Each CPU kernel path of the 4-bit kernel (`runtime/kernels/grid_int4_cpu.py`) against a float64 product.

Every path that this CPU supports runs here (AVX-512, AVX2+FMA, plain C++); a path the CPU lacks
is skipped with the feature it needs, so an AVX2-only machine still tests its own fast path. The
choice of path from the CPU's flags is checked on flag sets of the common CPU kinds.
"""

from __future__ import annotations

import pytest
import torch

from runtime.kernels import cpu_features, grid_int4_cpu
from runtime.quantize import GridInt4Linear, four_bit_grid
from runtime.quantize.grid_int4 import _pack_nibbles
from tests.runtime.test_float32_int4 import q4_1_like

NEEDS = {"avx512": "AVX-512 F and BW", "avx2": "AVX2 and FMA", "plain": "nothing"}
ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})  # AVX2 laptops and servers
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
OLD = frozenset({"sse4_2", "avx"})


@pytest.fixture(scope="module", autouse=True)
def built():
    if not grid_int4_cpu.available():
        pytest.fail("the 4-bit CPU kernel did not build (Inductor's C++ compiler is part of the test setup)")


def _need(path: str) -> None:
    if path not in cpu_features.supported_paths():
        pytest.skip(f"this CPU lacks {NEEDS[path]} for the {path} path")


@pytest.mark.parametrize("path", cpu_features.PATHS)
@pytest.mark.parametrize("n,k", [(8, 64), (12, 96), (960, 576), (576, 1536)])
@pytest.mark.parametrize("m", [1, 3, 17])
def test_each_path_equals_the_float64_product(path, n, k, m):
    _need(path)
    w = q4_1_like(n, k, seed=n + k)
    codes, scales, zeros = four_bit_grid(w)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m * k))
    got = grid_int4_cpu.run(x, _pack_nibbles(codes, 32), scales, zeros, path)
    want = x.double() @ w.double().T
    assert got.shape == (m, n)
    assert ((got.double() - want).abs().max() / want.abs().max()).item() < 1e-6


@pytest.mark.parametrize("path", cpu_features.PATHS)
def test_a_row_gives_the_same_bits_alone_and_in_a_batch(path):
    """Draft verification (several rows) must give the logits that one-token decode gives."""
    _need(path)
    w = q4_1_like(64, 576, seed=4)
    layer = GridInt4Linear.from_linear(_as_linear(w))
    x = torch.randn(20, 576, generator=torch.Generator().manual_seed(9))
    batch = grid_int4_cpu.run(x, layer.packed, layer.scales, layer.zeros, path)
    alone = torch.cat([grid_int4_cpu.run(x[i : i + 1], layer.packed, layer.scales, layer.zeros, path) for i in range(20)])
    assert torch.equal(batch, alone)


def test_the_paths_differ_only_in_the_order_of_sums():
    w = q4_1_like(96, 576, seed=6)
    codes, scales, zeros = four_bit_grid(w)
    x = torch.randn(2, 576, generator=torch.Generator().manual_seed(1))
    packed = _pack_nibbles(codes, 32)
    outs = {p: grid_int4_cpu.run(x, packed, scales, zeros, p) for p in cpu_features.supported_paths()}
    for y in outs.values():
        torch.testing.assert_close(y, outs["plain"], rtol=1e-5, atol=1e-5)


def test_a_path_the_cpu_lacks_is_refused():
    lacking = [p for p in cpu_features.PATHS if p not in cpu_features.supported_paths()]
    if not lacking:
        pytest.skip("this CPU runs every path")
    w = q4_1_like(8, 64)
    codes, scales, zeros = four_bit_grid(w)
    with pytest.raises(ValueError, match=lacking[0]):
        grid_int4_cpu.run(torch.randn(1, 64), _pack_nibbles(codes, 32), scales, zeros, lacking[0])


def test_the_path_follows_the_cpu_flags():
    assert cpu_features.chosen_path(ZEN4, override="") == "avx512"
    assert cpu_features.chosen_path(ZEN3, override="") == "avx2"
    assert cpu_features.chosen_path(OLD, override="") == "plain"
    assert cpu_features.chosen_path(frozenset({"avx2"}), override="") == "plain"  # AVX2 without FMA
    assert cpu_features.chosen_path(frozenset({"avx512f", "fma", "avx2"}), override="") == "avx2"  # no BW


def test_the_override_caps_but_never_raises_the_path():
    assert cpu_features.chosen_path(ZEN4, override="avx2") == "avx2"
    assert cpu_features.chosen_path(ZEN4, override="plain") == "plain"
    assert cpu_features.chosen_path(ZEN3, override="avx512") == "avx2"
    assert cpu_features.chosen_path(ZEN3, override="nonsense") == "avx2"


def test_this_cpu_reports_its_model_and_flags():
    assert cpu_features.cpu_model()
    assert "plain" in cpu_features.supported_paths()
    assert grid_int4_cpu.kernel_path() in cpu_features.supported_paths()


def _as_linear(w: torch.Tensor) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin
