"""Hugging Face folder -> native checkpoint.

Reads `config.json`, the safetensors weights (one file, or shards listed by
`model.safetensors.index.json`) or, only when a folder has no safetensors, the PyTorch `.bin`
weights through `torch.load(weights_only=True)` (never a full unpickle), and the tokenizer files.
Only the files that `file_selection.select_files` picks are opened, so a `.bin` copy next to the
safetensors, `original/` or images are never read.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError, TokenizerError
from ..progress import ProgressCallback
from ..weight_map import hf_to_native
from .file_selection import BIN_INDEX, SAFETENSORS_INDEX, select_files, weight_format
from .steps import ConversionTarget, model_config, read_config, side_files


def convert_hf_dir(
    src: str | Path,
    target: str | Path,
    *,
    source: dict,
    progress: ProgressCallback | None = None,
    reserve_bytes: int = 0,
) -> Path:
    """Convert the HF model folder `src` into a checkpoint at `target` (which must not exist)."""
    src, out = Path(src), ConversionTarget(Path(target), source, progress, reserve_bytes)
    config = read_config(src / "config.json")
    cfg = model_config(config)
    selected = select_files([p.name for p in src.iterdir() if p.is_file()])
    weight_files = _weight_files(src, selected)
    out.check_space(sum(p.stat().st_size for p in weight_files), what=f"converting {src.name}")
    tokenizer_files, extra = side_files(src)
    if not tokenizer_files:
        raise TokenizerError(
            f"{src} has no tokenizer files (expected one of tokenizer.json, tokenizer.model, "
            "vocab.json + merges.txt). Copy them from the model's Hugging Face repo."
        )
    native = hf_to_native(_read_weights(weight_files, out.step), cfg)
    return out.write(
        native, config=config, architecture=cfg.family, tokenizer_files=tokenizer_files,
        extra_files=extra, steps=len(weight_files) + 1,
    )


def _weight_files(src: Path, selected: list[str]) -> list[Path]:
    """The weight files to read, in order; a shard the index names but the folder lacks is an
    error that names it."""
    fmt = weight_format(selected)
    if fmt is None:
        raise CheckpointError(
            f"{src} has no model weights (model*.safetensors or pytorch_model*.bin). Download "
            "the whole model, or point to a .gguf file instead."
        )
    index_name = SAFETENSORS_INDEX if fmt == "safetensors" else BIN_INDEX
    if index_name in selected:
        try:
            weight_map = json.loads((src / index_name).read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{src / index_name} is unreadable ({err}); download it again."
            ) from err
        names = sorted(set(weight_map.values()))
    else:
        names = [n for n in selected if n.endswith((".safetensors", ".bin"))]
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        raise CheckpointError(
            f"{src} is missing weight shard(s) {', '.join(missing)} listed in {index_name}. "
            "The download is incomplete: run `quill pull` again (or copy the missing files)."
        )
    return [src / n for n in names]


def _read_weights(files: list[Path], step: Callable[[int, int], None]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    total = len(files) + 1  # + the final write
    for i, path in enumerate(files):
        step(i, total)
        if path.suffix == ".safetensors":
            tensors.update(_read_safetensors(path))
        else:
            tensors.update(_read_bin(path))
    step(len(files), total)
    return tensors


def _truncated(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path.name} in {path.parent} cannot be read ({err}); the file is truncated or corrupt. "
        "Delete it and download the model again (`quill rm`, then `quill pull`)."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise _truncated(path, err) from err


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path.name} holds Python objects other than tensors, which Quill never unpickles "
            f"({str(err).splitlines()[0]}). Use the model's safetensors files instead."
        ) from err
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise _truncated(path, err) from err
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors.")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
