"""Which vector instructions the running CPU has, and which CPU kernel path follows from them.

Quill's C++ kernels (`grid_int4_cpu.py`) carry one code path per instruction set and pick one
when the process starts, from what this CPU reports, never from the flags of the machine that
built them: most users have AVX2 and FMA but not AVX-512 (AMD Zen 2/3, Intel consumer chips).

Paths, fastest first: "avx512" (AVX-512 F and BW), "avx2" (AVX2 and FMA), "plain" (portable C++).
`QUILL_CPU_KERNEL=avx2` (or `plain`) caps the choice, for benchmarks that stand in for a smaller
CPU and for tests; a path this CPU lacks is never chosen, whatever the variable says.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

PATHS = ("avx512", "avx2", "plain")  # fastest first
_NEEDS = {"avx512": {"avx512f", "avx512bw"}, "avx2": {"avx2", "fma"}, "plain": set()}
OVERRIDE_ENV = "QUILL_CPU_KERNEL"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags this CPU reports (Linux: /proc/cpuinfo; elsewhere what
    PyTorch's own dispatcher detected, mapped onto the same names)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AVX512" in capability:
        return frozenset({"avx2", "fma", "avx512f", "avx512bw"})
    if "AVX2" in capability:
        return frozenset({"avx2", "fma"})
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name, for result files and logs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def supported_paths(flags: frozenset[str] | None = None) -> list[str]:
    """Kernel paths this CPU can run, fastest first ("plain" always)."""
    have = cpu_flags() if flags is None else flags
    return [p for p in PATHS if _NEEDS[p] <= have]


def chosen_path(flags: frozenset[str] | None = None, override: str | None = None) -> str:
    """The fastest supported path, capped by `override` (default: `QUILL_CPU_KERNEL`)."""
    paths = supported_paths(flags)
    cap = (os.environ.get(OVERRIDE_ENV, "") if override is None else override).strip().lower()
    if cap in PATHS:
        paths = [p for p in paths if PATHS.index(p) >= PATHS.index(cap)]
    return paths[0]


def vector_flags() -> list[str]:
    """The CPU's vector-related flags (for benchmark result files)."""
    keep = ("sse4", "avx", "fma", "f16c", "amx", "vnni", "bf16")
    return sorted(f for f in cpu_flags() if f.startswith(keep))
