"""Fetching a model from the Hugging Face hub: only the needed files, resumable, into the HF cache.

`huggingface_hub` does the HTTP work, the resuming of partial files, the `HF_TOKEN` login and
the shared cache (`HF_HOME` / `HF_HUB_CACHE`); this module picks the files
(`convert.file_selection.select_files`), checks free disk first, reports progress and turns the hub's
exceptions into errors that say what to do. With `HF_HUB_OFFLINE=1` (or no network) the same
selection is served from the HF cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..convert.disk_space import check_free_space
from ..convert.file_selection import select_files, weight_format
from ..errors import GatedModelError, ModelNotFoundError
from ..progress import ProgressCallback, format_bytes, report
from .aliases import describe_aliases

_TRUE = {"1", "on", "yes", "true"}


class HubUnreachable(Exception):
    """The hub could not be asked (no network, DNS, timeout, 5xx, offline mode)."""


@dataclass(frozen=True)
class Snapshot:
    path: Path  # snapshot folder in the HF cache
    revision: str  # commit sha
    files: list[str]  # selected files, relative to `path`


def hub_offline() -> bool:
    """`HF_HUB_OFFLINE`, read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hf_cache_dir() -> Path:
    """The HF hub cache, read at call time with huggingface_hub's precedence."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _is_network_error(err: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(err, (OfflineModeIsEnabled, TimeoutError, ConnectionError)):
        return True
    # huggingface_hub's HTTP client (httpx or its fork) raises TransportError subclasses.
    return any(c.__name__ in ("TransportError", "TimeoutException") for c in type(err).__mro__)


def _hub_error(repo_id: str, err: Exception) -> Exception:
    from huggingface_hub import constants, errors

    page = f"{constants.ENDPOINT.rstrip('/')}/{repo_id}"
    if isinstance(err, errors.GatedRepoError) or getattr(
        getattr(err, "response", None), "status_code", None
    ) in (401, 403):
        return GatedModelError(
            f"{repo_id} is gated: accept its license on {page} while logged in, then log in "
            "here with `hf auth login` (or set HF_TOKEN to a token with read access) and try again."
        )
    if isinstance(err, errors.RevisionNotFoundError):
        return ModelNotFoundError(
            f"{repo_id} has no revision by that name; see {page}/tree/main for branches and tags."
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return ModelNotFoundError(
            f"Hugging Face has no model {repo_id!r} (or it is private: log in with "
            f"`hf auth login`). Check the spelling, or use an alias:\n{describe_aliases()}"
        )
    if _is_network_error(err) or isinstance(err, errors.HfHubHTTPError):
        return HubUnreachable(f"the Hugging Face hub cannot be reached ({err})")
    return err


def remote_files(repo_id: str, revision: str | None) -> tuple[str, dict[str, int]]:
    """(commit sha, {file: size}) of the repo at `revision`, from the hub's API."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=30)
    except Exception as err:
        raise _hub_error(repo_id, err) from err
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    return info.sha, sizes


def _same_disk(a: Path, b: Path) -> bool:
    def dev(p: Path) -> int:
        while not p.exists() and p != p.parent:
            p = p.parent
        return p.stat().st_dev

    return dev(a) == dev(b)


def download_snapshot(
    repo_id: str,
    revision: str | None,
    *,
    convert_dir: Path,
    progress: ProgressCallback | None = None,
    reserve_bytes: int = 0,
) -> Snapshot:
    """Download the selected files of `repo_id` (resuming partial ones) into the HF cache."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    sha, sizes = remote_files(repo_id, revision)
    files = select_files(sizes)
    if weight_format(files) is None:
        raise ModelNotFoundError(
            f"{repo_id} has no weights Quill reads (model*.safetensors, pytorch_model*.bin or a "
            "gpt-fast model.pth). "
            "For a GGUF-only repo, download the .gguf file and pass its path."
        )
    cache = hf_cache_dir()
    missing = [f for f in files if not isinstance(
        try_to_load_from_cache(repo_id, f, cache_dir=cache, revision=sha), str)]
    to_fetch = sum(sizes[f] for f in missing)
    weights = sum(sizes[f] for f in files if f.endswith((".safetensors", ".bin", ".pth")))
    needed = to_fetch + (weights if _same_disk(cache, convert_dir) else 0)
    check_free_space(
        cache, needed, reserve_bytes=reserve_bytes,
        what=f"{repo_id} ({format_bytes(to_fetch)} to download, {format_bytes(weights)} to convert)",
    )
    total, done = sum(sizes[f] for f in files), 0
    path = None
    for name in files:
        report(progress, "download", done, total)
        bar = _progress_bar(lambda n, base=done: report(progress, "download", base + n, total))
        try:
            path = hf_hub_download(repo_id, name, revision=sha, cache_dir=cache, tqdm_class=bar)
        except Exception as err:
            raise _hub_error(repo_id, err) from err
        done += sizes[name]
    report(progress, "download", total, total)
    return Snapshot(path=Path(path).parent, revision=sha, files=files)


def _progress_bar(on_bytes):
    """A tqdm class for huggingface_hub that draws nothing and reports bytes to `on_bytes`, so a
    multi-GB shard moves Quill's own progress instead of jumping from 0 to done."""
    from tqdm.auto import tqdm

    class QuillBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # the caller's progress callback is the display
            super().__init__(*args, **kwargs)
            self.quill_bytes = int(kwargs.get("initial") or 0)

        def update(self, n=1):
            self.quill_bytes += int(n or 0)
            on_bytes(self.quill_bytes)
            return super().update(n)

    return QuillBar


def cached_snapshot(repo_id: str, revision: str | None) -> Snapshot | None:
    """The selected files of `repo_id` from the HF cache alone, or None if it has none."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hf_cache_dir()
    try:
        folder = Path(snapshot_download(
            repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    listing = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    files = select_files(listing)
    if weight_format(files) is None or "config.json" not in files:
        return None
    for name in files:  # resolve each through the hub's own cache lookup (refs -> snapshot)
        try:
            hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError):
            return None
    return Snapshot(path=folder, revision=folder.name, files=files)


def cached_repos() -> list[str]:
    """Repo ids with a snapshot in the HF cache (for 'what is cached' in offline errors)."""
    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    return sorted(
        p.name.removeprefix("models--").replace("--", "/")
        for p in cache.iterdir() if p.name.startswith("models--") and (p / "snapshots").is_dir()
    )
