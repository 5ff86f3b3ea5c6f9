"""The runtime's own checkpoint layout: safetensors weights plus a JSON manifest.

A converted checkpoint is one folder:

    quill.json           manifest (architecture, HF config, dtype, weight and tokenizer files,
                         source, converter version); written last, so its presence means complete
    model.safetensors    weights under the runtime's own tensor names (see `weight_map.py`)
    tokenizer files      copied from the source (tokenizer.json, tokenizer.model, ...)
    config.json          the source's HF config, also kept in the manifest

`write_checkpoint` builds the folder under a temporary sibling name and renames it into place only
when every file is written and flushed, so an interrupted conversion never leaves a folder that
`read_manifest` accepts. Weights load with mmap (`safetensors.safe_open`) straight to the target
device and dtype; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .errors import CheckpointError

MANIFEST_NAME = "quill.json"
FORMAT_NAME = "quill-checkpoint"
FORMAT_VERSION = 1
CONVERTER_VERSION = "1"


@dataclass(frozen=True)
class Manifest:
    architecture: str  # "llama" | "phi3" | "phi"
    config: dict  # the source's Hugging Face config.json, as read
    dtype: str  # dtype the weights are stored in
    weights: list[str]  # safetensors files, relative to the folder
    tokenizer_files: list[str]  # relative to the folder
    source: dict = field(default_factory=dict)  # {"kind", "ref", "revision"}
    converter_version: str = CONVERTER_VERSION
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION


def read_manifest(ckpt_dir: str | os.PathLike) -> Manifest:
    """Read and check a converted checkpoint's manifest; raise `CheckpointError` if it is not a
    complete checkpoint (no manifest, unreadable manifest, or listed files missing)."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{ckpt_dir} is not a converted Quill checkpoint (no {MANIFEST_NAME}). "
            "Point to a Hugging Face folder, a .gguf file or a model alias and it is converted."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"format is {data.get('format')!r}")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError("made by a newer Quill; upgrade quill-lsp")
        manifest = Manifest(**data)
    except (ValueError, TypeError) as err:
        raise CheckpointError(
            f"{path} is corrupt ({err}). Remove the folder (`quill rm`) and convert again."
        ) from err
    for name in [*manifest.weights, *manifest.tokenizer_files]:
        if not (ckpt_dir / name).is_file():
            raise CheckpointError(
                f"{ckpt_dir} is incomplete: {name} is missing. Remove it with `quill rm` and "
                "convert again."
            )
    return manifest


def load_tensors(
    ckpt_dir: str | os.PathLike,
    manifest: Manifest,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Load every weight with mmap, moving each tensor to `device`/`dtype` as it is read."""
    from safetensors import SafetensorError, safe_open

    tensors: dict[str, torch.Tensor] = {}
    for name in manifest.weights:
        path = Path(ckpt_dir) / name
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    t = f.get_tensor(key)
                    if dtype is not None and t.is_floating_point():
                        t = t.to(dtype)
                    tensors[key] = t.to(device)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(
                f"{path} cannot be read ({err}); the file is truncated or corrupt. "
                "Remove the model with `quill rm` and convert it again."
            ) from err
    return tensors


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint(
    target_dir: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    *,
    architecture: str,
    config: dict,
    tokenizer_files: Mapping[str, str | os.PathLike | bytes],
    source: dict,
    extra_files: Iterable[tuple[str, str | os.PathLike | bytes]] = (),
) -> Manifest:
    """Write a complete checkpoint atomically; `target_dir` must not exist yet.

    `tokenizer_files` maps a file name in the checkpoint to a source path or raw bytes;
    `extra_files` are copied the same way, and `config` is also written as `config.json`.
    """
    from safetensors.torch import save_file

    target = Path(target_dir)
    if target.exists():
        raise CheckpointError(f"{target} already exists; remove it first with `quill rm`.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        dtypes = {str(v.dtype).removeprefix("torch.") for v in contiguous.values() if v.is_floating_point()}
        save_file(contiguous, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del contiguous
        # config.json goes along so the folder is also readable by tools that expect one.
        config_file = ("config.json", json.dumps(config, indent=2).encode())
        extra = [config_file, *extra_files]
        for name, content in [*tokenizer_files.items(), *((n, c) for n, c in extra if n not in tokenizer_files)]:
            dest = tmp / name
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                shutil.copyfile(content, dest)
        manifest = Manifest(
            architecture=architecture,
            config=config,
            dtype=",".join(sorted(dtypes)) or "float32",
            weights=["model.safetensors"],
            tokenizer_files=sorted(tokenizer_files),
            source=source,
        )
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        # The manifest goes last: a folder without it is never taken for a checkpoint.
        manifest_tmp = tmp / (MANIFEST_NAME + ".part")
        with open(manifest_tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(manifest), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        manifest_tmp.rename(tmp / MANIFEST_NAME)
        _fsync_dir(tmp)
        tmp.rename(target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
