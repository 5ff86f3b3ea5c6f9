"""The int8 GEMVs that decode runs on Hopper keep their main loop free of exchanges between threads.

An int8 GEMV is bound by instructions: a step that passes x through shared memory behind
barriers, or sums rows across threads with shuffles, cost Phi-3-mini's int8 decode several
percent (benchmarks/README.md, "sum8"). Triton compiles for sm_90 without a GPU and its wheel
carries ptxas, so `benchmarks/sass_count.py` reads the SASS of the runtime's own configs here.
Skipped where Triton is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets import require_module


@pytest.fixture(autouse=True)
def _triton_installed():
    # A test dependency on Linux x86-64 (pyproject's `test` extra): missing fails under CI.
    require_module("triton", "`pip install -e '.[test]'` installs it on Linux x86-64")


ROOT = Path(__file__).resolve().parents[2]
# (n, k, role) of the runtime's int8 GEMVs: Phi-3-mini's q/k/v, head and output projection,
# Llama-3-8B's gate/up and down projection.
SHAPES = [(9216, 3072, "--norm"), (32064, 3072, "--norm"), (3072, 3072, None), (28672, 4096, "--norm"),
          (4096, 14336, "--gated")]


@pytest.mark.parametrize("n,k,role", SHAPES)
def test_shipped_int8_configs_loop_without_barriers_or_shuffles(n, k, role):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sass_count.py"), "--n", str(n), "--k", str(k)]
    proc = subprocess.run(cmd + ([role] if role else []), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    counts = {op: int(v) for op, v in re.findall(r"([A-Z0-9]+) (\d+)", line.split(":", 1)[1])}
    assert "loop:" in line and counts["LDG"] > 0, line  # the K loop was found and reads weights
    assert counts["BAR"] == 0 and counts["SHFL"] == 0 and counts["LDS"] == 0, line
