"""Llama 3's `tokenizer.model`: a tiktoken rank file (base64 token, rank per line) with the
Llama 3 split pattern and 256 special tokens after the 128000 ranks, as in Meta's reference
`llama/tokenizer.py` (also in the `llama-models` package). Special names come from
`tokenizer_config.json` when the checkpoint has one, otherwise from Meta's list.
"""

from __future__ import annotations

import base64
from pathlib import Path

import tiktoken

from runtime.errors import TokenizerError
from runtime.tokenizer.base import AddedToken, Tokenizer
from runtime.tokenizer.bpe import token_to_bytes
from runtime.tokenizer.hf_files import config_added_tokens, generation_stop_ids, read_config
from runtime.tokenizer.pretokenizers import LLAMA3_PATTERN

LLAMA3_RANKS = 128000
NUM_RESERVED_SPECIAL = 256


def llama3_special_names() -> list[str]:
    """Meta's order for ids 128000.. (`llama_models/llama3/tokenizer.py`)."""
    names = [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
        "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
        "<|image|>",
    ]  # fmt: skip
    return names + [f"<|reserved_special_token_{i}|>" for i in range(2, NUM_RESERVED_SPECIAL - len(names) + 2)]


def is_tiktoken_file(path: Path) -> bool:
    """A rank file starts with `<base64> <int>`; a sentencepiece model is binary protobuf."""
    with open(path, "rb") as f:
        head = f.read(64).split(b"\n", 1)[0]
    parts = head.split(b" ")
    if len(parts) != 2 or not parts[1].isdigit():
        return False
    try:
        base64.b64decode(parts[0], validate=True)
    except ValueError:
        return False
    return True


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class TiktokenCodec:
    def __init__(self, ranks: dict[bytes, int], pattern: str):
        self.size = max(ranks.values()) + 1
        self._bytes = [b""] * self.size
        for data, rank in ranks.items():
            self._bytes[rank] = data
        self._ranks = ranks
        self._tiktoken = tiktoken.Encoding("tokenizer.model", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})

    def encode_text(self, text: str, dummy_prefix: bool = True) -> list[int]:
        return self._tiktoken.encode_ordinary(text) if text else []

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def strips_leading_space(self, token_id: int) -> bool:
        return False

    def piece_to_id(self, piece: str) -> int | None:
        data = token_to_bytes(piece)
        return self._ranks.get(data if data is not None else piece.encode("utf-8"))


def llama3_tiktoken_tokenizer(model_dir: Path) -> Tokenizer:
    ranks = read_ranks(model_dir / "tokenizer.model")
    config = read_config(model_dir)
    added = config_added_tokens(model_dir, config)
    if not added:
        if len(ranks) != LLAMA3_RANKS:
            raise TokenizerError(
                f"{model_dir / 'tokenizer.model'} is a tiktoken file with {len(ranks)} ranks, not "
                "Llama 3's 128000, and no tokenizer_config.json names its special tokens. Add the "
                "model's tokenizer_config.json (or tokenizer.json) to the folder."
            )
        added = [AddedToken(name, LLAMA3_RANKS + i) for i, name in enumerate(llama3_special_names())]
    by_name = {t.content: t.id for t in added}
    bos = by_name.get("<|begin_of_text|>")
    eos = by_name.get("<|end_of_text|>")
    return Tokenizer(
        TiktokenCodec(ranks, LLAMA3_PATTERN), added, bos_id=bos, eos_id=eos,
        add_bos=bool(config.get("add_bos_token", True)) and bos is not None,
        extra_stop_ids=generation_stop_ids(model_dir),
    )  # fmt: skip
