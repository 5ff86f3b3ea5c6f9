"""Shared pytest configuration: GPU tests skip cleanly on machines without CUDA; one compile
cache serves the whole test run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Quill keeps Inductor's and Triton's caches under its own cache folder unless these name
# others (runtime/compile.py). Many tests start from an empty cache folder, the CLI and the
# server in subprocesses too (they inherit the variables); with one shared cache they compile
# the SmolLM2 decode step once per run instead of once per test. The placement itself is
# tested in tests/runtime/test_compile.py.
_SHARED = Path(tempfile.gettempdir()) / f"quill-tests-compile-{os.getuid() if hasattr(os, 'getuid') else 0}"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_SHARED / "inductor"))
os.environ.setdefault("TRITON_CACHE_DIR", str(_SHARED / "triton"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU either way
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
