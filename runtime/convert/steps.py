"""What every converter shares: reading and checking the source's `config.json`.

Converters read their source into tensors under Hugging Face names (or gpt-fast names), map them
to the runtime's names with `runtime.weight_map` and hand them to
`runtime.checkpoint.write_checkpoint`, which writes the folder atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

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
