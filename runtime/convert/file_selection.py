"""Which files of a Hugging Face repo or folder a conversion needs, and nothing more.

The DirectML sample downloaded whole repos (Mistral's `.bin` and `.safetensors` copies: 29 GB for
a 14 GB model). Quill takes only top-level files: the safetensors weights (or the PyTorch `.bin`
weights when a repo has no safetensors, or a gpt-fast `model.pth` when it has neither), the
configs and the tokenizer files. Sub-folders
(`original/`, `onnx/`, ...), images, GGUF, ONNX, Flax and TF files are never selected.
"""

from __future__ import annotations

import re
from typing import Iterable

CONFIG_FILES = ("config.json", "generation_config.json")

# Tokenizer files a converter copies when present; runtime.tokenizer may know more names.
BASE_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.tiktoken",
    "qwen.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
GPTFAST_WEIGHTS = "model.pth"
_SAFETENSORS = re.compile(r"^model(-\d+-of-\d+)?\.safetensors$")
_BIN = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$")


def tokenizer_file_names() -> tuple[str, ...]:
    from ..tokenizer import TOKENIZER_FILE_NAMES

    return tuple(dict.fromkeys([*BASE_TOKENIZER_FILES, *TOKENIZER_FILE_NAMES]))


def weight_format(filenames: Iterable[str]) -> str | None:
    """"safetensors" if the repo has HF safetensors weights, else "bin" if it has `.bin`, else
    "pth" for a gpt-fast / DirectML-sample `model.pth` (the hub's `-pytdml` repos)."""
    names = set(filenames)
    if SAFETENSORS_INDEX in names or any(_SAFETENSORS.match(n) for n in names):
        return "safetensors"
    if BIN_INDEX in names or any(_BIN.match(n) for n in names):
        return "bin"
    if GPTFAST_WEIGHTS in names:
        return "pth"
    return None


def select_files(filenames: Iterable[str]) -> list[str]:
    """The subset of a repo's file list (paths relative to the repo root) worth fetching."""
    names = [n for n in filenames if "/" not in n]  # never original/, onnx/, ...
    fmt = weight_format(names)
    if fmt == "safetensors":
        weights = [n for n in names if _SAFETENSORS.match(n) or n == SAFETENSORS_INDEX]
    elif fmt == "bin":
        weights = [n for n in names if _BIN.match(n) or n == BIN_INDEX]
    elif fmt == "pth":
        weights = [GPTFAST_WEIGHTS]
    else:
        weights = []
    wanted = set(CONFIG_FILES) | set(tokenizer_file_names())
    return sorted(weights) + sorted(n for n in names if n in wanted)
