"""The server's command-line options, declared once.

`python -m lsp_server` and `quill serve` parse them; `quill try`, `chat` and `complete` accept
them too and pass them on to the server they start. `settings.from_cli` turns the parsed values
into settings, which override the editor's. The flag spellings are the DirectML sample's
(`--hf_model`, `--checkpoint_path`, ...), plus `--model` and `--device`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ServerOption:
    name: str  # the flag without its dashes, also the parsed attribute
    help: str
    type: Callable[[str], object] = str
    switch: bool = False  # a flag without a value (store_true)


SERVER_OPTIONS = (
    ServerOption("model", "model alias, HF repo id, directory, .gguf or model.pth (default smollm2)"),
    ServerOption("hf_model", "Hugging Face repo id (the sample's flag; same as --model)"),
    ServerOption("checkpoint_path", "a converted or Hugging Face checkpoint directory"),
    ServerOption("device", "auto, cpu, cuda[:N], mps or directml"),
    ServerOption("precision", "auto, float32, float16, bfloat16, or int8 / int4 (weight-only)"),
    ServerOption("max_context_length", "chat prompt budget in tokens (default 1500)", type=int),
    ServerOption("disable_history", "do not read or write chat history", switch=True),
    ServerOption("data_dir", "where chat history is kept (default: QUILL_DATA_DIR or the user data dir)"),
    ServerOption("cache_dir", "where converted models are kept (default: QUILL_CACHE_DIR or the user cache dir)"),
)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Add every server option to `parser`; unset ones parse as None (False for switches)."""
    for option in SERVER_OPTIONS:
        if option.switch:
            parser.add_argument(f"--{option.name}", action="store_true", help=option.help)
        else:
            parser.add_argument(f"--{option.name}", type=option.type, help=option.help)
