"""Shared pytest configuration: GPU tests skip cleanly on machines without CUDA; one compile
cache serves the whole test run, and no server compiles in the background; the real SmolLM2 GGUF is converted once for the tests that only
read the converted checkpoint (`smollm2_checkpoint`)."""

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
# A server that compiled per layer starts the whole-model compile in a child process
# (lsp_server/background_compile.py): a minute of both CPU cores under every server test that
# loads the default model. Off here; tests/runtime/test_whole_graph_cache.py runs it.
os.environ.setdefault("QUILL_BACKGROUND_COMPILE", "0")


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


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory) -> Path:
    """The SmolLM2 GGUF of the test assets converted into a cache folder of this run, once (about
    7 s on two cores). Tests only load it; a test of the conversion itself converts its own."""
    from runtime.store import resolve_model
    from tests.assets import smollm2_gguf

    return Path(resolve_model(str(smollm2_gguf()), cache_dir=tmp_path_factory.mktemp("smollm2-cache")))
