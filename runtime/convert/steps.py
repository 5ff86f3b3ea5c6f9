"""The steps every converter shares, so that `hf.py`, `gguf.py` and `pth.py` hold only what their
format needs: finding the config and tokenizer, reading the tensors and mapping their names to
the runtime's (`runtime.weight_map`).

A conversion runs them in this order:

    read_config, model_config     the source's HF `config.json` and its `ModelConfig`; an
                                  unsupported architecture fails here, before any weights are read
    side_files                    the tokenizer files and generation_config.json beside the weights
    ConversionTarget.check_space  the free-disk check, before the weights are read
    ConversionTarget.write        `runtime.checkpoint.write_checkpoint`, then the last progress step

`write_checkpoint` builds the folder under a temporary name and renames it into place only when
every file is flushed, so an interrupted conversion never leaves a folder that loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..checkpoint import write_checkpoint
from ..errors import CheckpointError
from ..progress import ProgressCallback, report
from .disk_space import check_free_space
from .file_selection import tokenizer_file_names

GENERATION_CONFIG = "generation_config.json"


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


def side_files(folder: Path) -> tuple[dict[str, Path], list[tuple[str, Path]]]:
    """(tokenizer files, other files to keep) found beside the weights in `folder`, by name.

    An empty tokenizer dict is the caller's error to raise: its remedy depends on the format.
    """
    tokenizer = {n: folder / n for n in tokenizer_file_names() if (folder / n).is_file()}
    generation = folder / GENERATION_CONFIG
    return tokenizer, [(GENERATION_CONFIG, generation)] if generation.is_file() else []


@dataclass(frozen=True)
class ConversionTarget:
    """Where a conversion writes and whom it tells: the arguments every converter passes on."""

    path: Path  # the checkpoint folder; must not exist yet
    source: dict  # recorded in the manifest: {"kind", "ref", "revision", ...}
    progress: ProgressCallback | None = None
    reserve_bytes: int = 0  # disk that must stay free once the checkpoint is written

    def check_space(self, needed: int, *, what: str) -> None:
        """Fail before reading any weights if `needed` bytes do not fit beside `path`."""
        check_free_space(self.path.parent, needed, what=what, reserve_bytes=self.reserve_bytes)

    def step(self, done: int, total: int) -> None:
        report(self.progress, "convert", done, total)

    def write(
        self,
        tensors: Mapping[str, torch.Tensor],
        *,
        config: dict,
        architecture: str,
        tokenizer_files: Mapping[str, Path],
        extra_files: Iterable[tuple[str, Path]] = (),
        steps: int,
    ) -> Path:
        """Write the checkpoint atomically; the write is the last of the conversion's `steps`
        progress steps."""
        write_checkpoint(
            self.path, tensors, config=config, architecture=architecture,
            tokenizer_files=tokenizer_files, source=self.source, extra_files=extra_files,
        )
        self.step(steps, steps)
        return self.path
