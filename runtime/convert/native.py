"""The last step of every converter: native tensors + config -> a checkpoint folder.

Converters read their source into tensors under Hugging Face names (or gpt-fast names), map them
to the runtime's names with `runtime.weight_map` and hand them here; `write_checkpoint` writes the
folder atomically. The HF `config.json` goes along as an extra file so the folder is also readable
by tools that expect one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..checkpoint import Manifest, write_checkpoint
from ..errors import CheckpointError


def model_config(config: dict):
    """`ModelConfig` for an HF config dict; raises `UnsupportedArchitectureError` early, before
    any weights are read."""
    from ..config import ModelConfig

    try:
        return ModelConfig.from_hf_config(config)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"config.json is missing or has a bad value for {err}; use the config.json that "
            "came with the model."
        ) from err


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: a model folder needs the config.json of the Hugging Face repo "
            "it came from."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); fetch it again.") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; fetch it again.")
    return config


def write_native(
    target: Path,
    native: Mapping[str, torch.Tensor],
    *,
    config: dict,
    family: str,
    tokenizer_files: Mapping[str, str | os.PathLike | bytes],
    source: dict,
    extra_files: Iterable[tuple[str, str | os.PathLike | bytes]] = (),
) -> Manifest:
    extra = [("config.json", json.dumps(config, indent=2).encode()), *extra_files]
    return write_checkpoint(
        target,
        native,
        architecture=family,
        config=config,
        tokenizer_files=tokenizer_files,
        source=source,
        extra_files=[(n, c) for n, c in extra if n not in tokenizer_files],
    )
