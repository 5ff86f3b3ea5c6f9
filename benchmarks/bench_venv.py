"""The CPU benchmark's own virtualenv with llama-cpp-python built from source.

llama.cpp is a peer, not a dependency of Quill, so it lives in a separate environment
(`<test assets>/bench-venv`, created on first use). The wheel is compiled here with a native CPU
build (`-DGGML_NATIVE=ON`: AVX-512/BF16 when the CPU has them), which takes several minutes on two
cores; later runs reuse it. `python benchmarks/bench_venv.py` builds it ahead of time.

The CPU features are named rather than detected (`GGML_NATIVE=OFF`): a native build on this
machine kind enables AMX, which the CPU reports but the VM does not grant, and `llama_decode`
then dies with a segmentation fault. AVX-512 (VNNI, BF16) is what is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

LLAMA_CPP_SPEC = "llama-cpp-python==0.3.36"
CMAKE_ARGS = " ".join([
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DGGML_AVX512=ON", "-DGGML_AVX512_VBMI=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON",
    "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DGGML_BLAS=OFF", "-DLLAMA_CURL=OFF",
])
BUILD_MARKER = "quill-llama-cpp-build.txt"  # the CMAKE_ARGS the installed wheel was built with
REPO_ROOT = Path(__file__).resolve().parent.parent


def bench_venv_dir() -> Path:
    root = Path(os.environ.get("QUILL_TEST_ASSETS", REPO_ROOT / ".test-assets"))
    return root / "bench-venv"


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_llama_cpp(python: Path) -> bool:
    marker = python.parent.parent / BUILD_MARKER
    if not python.exists() or not marker.exists() or marker.read_text() != CMAKE_ARGS:
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
    env["CMAKE_ARGS"] = CMAKE_ARGS
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    cmd = [str(python), "-m", "pip", "install", "--force-reinstall", "--no-cache-dir",
           "--no-binary", "llama-cpp-python", LLAMA_CPP_SPEC]
    log(f"building {LLAMA_CPP_SPEC} from source (several minutes): CMAKE_ARGS={CMAKE_ARGS}")
    subprocess.run(cmd, env=env, check=True)
    (env_dir / BUILD_MARKER).write_text(CMAKE_ARGS)
    return python


if __name__ == "__main__":
    print(ensure_llama_cpp())
    sys.exit(0)
