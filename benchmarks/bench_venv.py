"""The CPU benchmark's own virtualenv with llama-cpp-python built from source.

llama.cpp is a peer, not a dependency of Quill, so it lives in a separate environment
(`<test assets>/bench-venv-<features>`, created on first use), one per set of CPU features, so an
AVX2 build and an AVX-512 build live side by side. The wheel is compiled here, which takes
several minutes on two cores; later runs reuse it. `python benchmarks/bench_venv.py` builds it
ahead of time.

The CPU features are detected (`runtime/kernels/cpu_features.py`) and named to CMake one by one rather
than left to `GGML_NATIVE=ON`: a native build on this machine kind enables AMX, which the CPU
reports but the VM does not grant, and `llama_decode` then dies with a segmentation fault. So
AMX stays off; every other feature is on exactly when the running CPU reports it (a build that
named AVX-512 on an AVX2-only CPU died with an illegal instruction). `QUILL_CPU_KERNEL=avx2`
caps the build at AVX2, as it caps Quill's own kernels, to stand in for an AVX2-only CPU.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

LLAMA_CPP_SPEC = "llama-cpp-python==0.3.36"
# CMake option -> the /proc/cpuinfo flag that turns it on
GGML_FEATURES = {
    "GGML_AVX": "avx", "GGML_AVX2": "avx2", "GGML_FMA": "fma", "GGML_F16C": "f16c",
    "GGML_AVX_VNNI": "avx_vnni", "GGML_AVX512": "avx512f", "GGML_AVX512_VBMI": "avx512vbmi",
    "GGML_AVX512_VNNI": "avx512_vnni", "GGML_AVX512_BF16": "avx512_bf16",
}
AVX512_BASE = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
AVX512_OPTIONS = ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16")
BUILD_MARKER = "quill-llama-cpp-build.txt"  # the CMAKE_ARGS the installed wheel was built with
REPO_ROOT = Path(__file__).resolve().parent.parent


if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def cmake_args(flags: frozenset[str] | None = None, path: str | None = None) -> str:
    """CMAKE_ARGS for a build with exactly the features this CPU has (AMX off), capped at AVX2
    when Quill's kernel path is capped there (`QUILL_CPU_KERNEL`)."""
    from runtime.kernels import cpu_features

    have = cpu_features.cpu_flags() if flags is None else flags
    capped = (path or cpu_features.chosen_path(have)) != "avx512"
    args = ["-DGGML_NATIVE=OFF"]
    for option, flag in GGML_FEATURES.items():
        # GGML_AVX512 compiles with AVX-512 F, CD, VL, DQ and BW together
        needs = AVX512_BASE if option == "GGML_AVX512" else {flag}
        on = needs <= have and not (capped and option in AVX512_OPTIONS)
        args.append(f"-D{option}={'ON' if on else 'OFF'}")
    args += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
             "-DGGML_BLAS=OFF", "-DLLAMA_CURL=OFF"]
    return " ".join(args)


def bench_venv_dir(args: str | None = None) -> Path:
    root = Path(os.environ.get("QUILL_TEST_ASSETS", REPO_ROOT / ".test-assets"))
    key = hashlib.sha1((args or cmake_args()).encode()).hexdigest()[:10]
    return root / f"bench-venv-{key}"


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_llama_cpp(python: Path, args: str) -> bool:
    marker = python.parent.parent / BUILD_MARKER
    if not python.exists() or not marker.exists() or marker.read_text() != args:
        return False
    probe = subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True)
    return probe.returncode == 0


def ensure_llama_cpp(log=print) -> Path:
    """Return the bench venv's python, building llama-cpp-python into it if needed."""
    args = cmake_args()
    env_dir = bench_venv_dir(args)
    python = venv_python(env_dir)
    if has_llama_cpp(python, args):
        return python
    if not python.exists():
        log(f"creating {env_dir}")
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = dict(os.environ)
    env["CMAKE_ARGS"] = args
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    cmd = [str(python), "-m", "pip", "install", "--force-reinstall", "--no-cache-dir",
           "--no-binary", "llama-cpp-python", LLAMA_CPP_SPEC]
    log(f"building {LLAMA_CPP_SPEC} from source (several minutes): CMAKE_ARGS={args}")
    subprocess.run(cmd, env=env, check=True)
    (env_dir / BUILD_MARKER).write_text(args)
    return python


if __name__ == "__main__":
    print(ensure_llama_cpp())
    sys.exit(0)
