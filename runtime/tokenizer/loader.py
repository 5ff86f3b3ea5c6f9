"""`load_tokenizer(model_dir)`: pick the tokenizer kind from the files present, never from names.

Order: a GGUF file (or a folder holding exactly one), `tokenizer.model` (tiktoken rank file for
Llama 3, otherwise sentencepiece), `tokenizer.json` (byte-level BPE), then `vocab.json` +
`merges.txt` (or GPT-2's original `encoder.json` + `vocab.bpe`). A folder with both
`tokenizer.model` and `tokenizer.json` (Llama 2, Mistral) is read through sentencepiece, with the
added tokens that `tokenizer.json` lists.
"""

from __future__ import annotations

from pathlib import Path

from runtime.errors import TokenizerError
from runtime.tokenizer.base import Tokenizer
from runtime.tokenizer.gguf_vocab import gguf_tokenizer
from runtime.tokenizer.hf_files import byte_level_from_tokenizer_json, byte_level_from_vocab_merges
from runtime.tokenizer.sentencepiece_files import sentencepiece_tokenizer
from runtime.tokenizer.tiktoken_tokenizer import is_tiktoken_file, llama3_tiktoken_tokenizer

# Files a converter should copy from a Hugging Face checkpoint when present.
TOKENIZER_FILE_NAMES: tuple[str, ...] = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
)


def load_tokenizer(model_dir: Path | str) -> Tokenizer:
    path = Path(model_dir)
    if path.is_file() and path.suffix == ".gguf":
        return gguf_tokenizer(path)
    if not path.is_dir():
        raise TokenizerError(f"{path} is not a folder with tokenizer files or a .gguf file.")
    if (path / "tokenizer.model").exists():
        if is_tiktoken_file(path / "tokenizer.model"):
            return llama3_tiktoken_tokenizer(path)
        return sentencepiece_tokenizer(path)
    if (path / "tokenizer.json").exists():
        return byte_level_from_tokenizer_json(path)
    for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
        if (path / vocab).exists() and (path / merges).exists():
            return byte_level_from_vocab_merges(path, vocab, merges)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return gguf_tokenizer(ggufs[0])
    raise TokenizerError(
        f"{path} has no tokenizer files: expected tokenizer.model, tokenizer.json, or vocab.json "
        "with merges.txt. Download the model again or convert it with `quill pull`."
    )
