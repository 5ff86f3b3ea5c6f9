"""gpt-fast / DirectML-sample `model.pth` -> native checkpoint.

Those scripts saved a plain state dict under gpt-fast's names (`tok_embeddings`,
`layers.N.attention.wqkv`, `feed_forward.w1/w2/w3`, ...) with `torch.save`. It is read with
`torch.load(weights_only=True)`, so nothing but tensors is ever unpickled, mapped with
`weight_map.gptfast_to_native` and stored as safetensors. The file carries no config, so the
Hugging Face `config.json` of the model it came from must sit beside it, with the tokenizer files.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, TokenizerError
from ..progress import ProgressCallback
from ..weight_map import gptfast_to_native
from .steps import ConversionTarget, model_config, read_config, side_files


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        # mmap needs torch's zip format; legacy pickle files load without it.
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, which Quill never unpickles "
            f"({str(err).splitlines()[0]}). Convert the original Hugging Face model instead."
        ) from err
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"{path} cannot be read ({err}); it is truncated or not a PyTorch file. Create it "
            "again, or convert the original Hugging Face model instead."
        ) from err
    for key in ("model", "state_dict"):  # some scripts wrap the weights
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} does not hold a state dict of tensors.")
    return {k.removeprefix("_orig_mod."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def convert_pth(
    path: str | Path,
    target: str | Path,
    *,
    source: dict,
    progress: ProgressCallback | None = None,
    reserve_bytes: int = 0,
) -> Path:
    """Convert a gpt-fast `model.pth` (with `config.json` and tokenizer files beside it)."""
    path, out = Path(path), ConversionTarget(Path(target), source, progress, reserve_bytes)
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{path.name} needs the model's config.json beside it ({config_path} is missing): "
            "copy config.json and the tokenizer files from the Hugging Face repo the model "
            "came from into that folder."
        )
    config = read_config(config_path)
    cfg = model_config(config)
    tokenizer_files, extra = side_files(path.parent)
    if not tokenizer_files:
        raise TokenizerError(
            f"No tokenizer files beside {path.name} in {path.parent}: copy tokenizer.json or "
            "tokenizer.model from the model's Hugging Face repo into that folder."
        )
    out.check_space(path.stat().st_size, what=f"converting {path.name}")
    out.step(0, 2)
    native = gptfast_to_native(_load_state_dict(path), cfg)
    out.step(1, 2)
    return out.write(
        native, config=config, architecture=cfg.family, tokenizer_files=tokenizer_files,
        extra_files=extra, steps=2,
    )
