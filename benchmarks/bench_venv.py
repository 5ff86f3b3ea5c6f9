"""The CPU benchmark's own virtualenv with llama-cpp-python built from source.

llama.cpp is a peer, not a dependency of Quill, so it lives in a separate environment
(`<test assets>/bench-venv`, created on first use). The wheel is compiled here with a native CPU
build (`-DGGML_NATIVE=ON`: AVX-512/BF16 when the CPU has them), which takes several minutes on two
cores; later runs reuse it. `python benchmarks/bench_venv.py` builds it ahead of time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

LLAMA_CPP_SPEC = "llama-cpp-python==0.3.36"
REPO_ROOT = Path(__file__).resolve().parent.parent


def bench_venv_dir() -> Path:
    root = Path(os.environ.get("QUILL_TEST_ASSETS", REPO_ROOT / ".test-assets"))
    return root / "bench-venv"


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_llama_cpp(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True)
    return probe.returncode == 0


def ensure_llama_cpp(log=print) -> Path:
    """Return the bench venv's python, building llama-cpp-python into it if needed."""
    env_dir = bench_venv_dir()
    python = venv_python(env_dir)
    if has_llama_cpp(python):
        return python
    if not python.exists():
        log(f"creating {env_dir}")
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = dict(os.environ)
    env["CMAKE_ARGS"] = "-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DLLAMA_CURL=OFF"
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    cmd = [str(python), "-m", "pip", "install", "--no-binary", "llama-cpp-python", LLAMA_CPP_SPEC]
    log(f"building {LLAMA_CPP_SPEC} from source (several minutes): {' '.join(cmd)}")
    subprocess.run(cmd, env=env, check=True)
    return python


if __name__ == "__main__":
    print(ensure_llama_cpp())
    sys.exit(0)
