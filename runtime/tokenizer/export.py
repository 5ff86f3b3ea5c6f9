"""`export_gguf_tokenizer`: write a GGUF's tokenizer as ordinary checkpoint files.

The GGUF converter calls this so a converted checkpoint carries tokenizer files like any Hugging
Face download, and `load_tokenizer` reads them with the regular loaders:

- `gpt2` vocabularies become a `tokenizer.json` (BPE model with vocab and merges, the GGUF's split
  passes as `Split` steps followed by a regex-free `ByteLevel`, added tokens, a BOS template when
  the GGUF asks for BOS). Hugging Face `tokenizers` loads it as well.
- `llama` vocabularies become a sentencepiece `tokenizer.model` (recipe R1).

Both get a `tokenizer_config.json` with the chat template, the BOS/EOS/UNK/PAD tokens, whether to
add BOS, and `added_tokens_decoder`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from runtime.errors import TokenizerError
from runtime.tokenizer.gguf_metadata import read_gguf_metadata
from runtime.tokenizer.gguf_vocab import LLAMA3_PRE_NAMES, byte_level_parts, gguf_sentencepiece_proto
from runtime.tokenizer.sentencepiece_tokenizer import CONTROL

_SPECIAL_KEYS = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}


def export_gguf_tokenizer(gguf_path: Path | str, out_dir: Path | str) -> list[str]:
    """Write the GGUF's tokenizer into `out_dir`; return the file names written."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    meta = read_gguf_metadata(gguf_path)
    kind = meta.get("tokenizer.ggml.model")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = meta.get("tokenizer.ggml.tokens") or []
    if kind == "gpt2":
        vocab, merges, passes, added = byte_level_parts(meta, gguf_path)
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", meta.get("tokenizer.ggml.pre") in LLAMA3_PRE_NAMES))
        doc = _tokenizer_json(vocab, merges, passes, added, meta, add_bos)
        _write(out_dir / "tokenizer.json", json.dumps(doc, ensure_ascii=False).encode("utf-8"))
        entries = {t.id: {"content": t.content, "special": t.special} for t in added}
        written = ["tokenizer.json"]
    elif kind == "llama":
        proto = gguf_sentencepiece_proto(meta, gguf_path)
        _write(out_dir / "tokenizer.model", proto.SerializeToString())
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))
        entries = {i: {"content": p.piece, "special": True} for i, p in enumerate(proto.pieces) if p.type == CONTROL}
        written = ["tokenizer.model"]
    else:
        raise TokenizerError(f"{gguf_path} has a {kind!r} tokenizer; Quill exports 'llama' and 'gpt2' ones.")
    config = _tokenizer_config(meta, tokens, entries, add_bos)
    _write(out_dir / "tokenizer_config.json", json.dumps(config, ensure_ascii=False, indent=2).encode("utf-8"))
    return [*written, "tokenizer_config.json"]


def gguf_tokenizer_config(gguf_path: Path | str) -> dict[str, Any]:
    """The chat template and special-token names of a GGUF, as tokenizer_config.json fields."""
    meta = read_gguf_metadata(gguf_path)
    return _tokenizer_config(meta, meta.get("tokenizer.ggml.tokens") or [], {}, add_bos=False)


def _tokenizer_config(meta: dict[str, Any], tokens: list[str], entries: dict, add_bos: bool) -> dict:
    config: dict[str, Any] = {
        "add_bos_token": add_bos,
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
    }
    for name, key in _SPECIAL_KEYS.items():
        token_id = meta.get(f"tokenizer.ggml.{key}")
        if token_id is not None and 0 <= token_id < len(tokens):
            config[name] = tokens[token_id]
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    config["clean_up_tokenization_spaces"] = False
    config["added_tokens_decoder"] = {
        str(i): {**e, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
        for i, e in sorted(entries.items())
    }
    return config


def _tokenizer_json(vocab, merges, passes, added, meta, add_bos: bool) -> dict:
    splits = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in passes]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    post: dict[str, Any] = byte_level
    if add_bos and bos_id is not None:
        bos = next(t for t, i in vocab.items() if i == bos_id)
        post = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        }  # fmt: skip
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": t.id, "content": t.content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": t.special}
            for t in added
        ],  # fmt: skip
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [*splits, byte_level]},
        "post_processor": post,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": meta.get("tokenizer.ggml.pre") in LLAMA3_PRE_NAMES,
            "vocab": vocab, "merges": [list(m) for m in merges],
        },  # fmt: skip
    }


def _write(path: Path, data: bytes) -> None:
    """Atomic write: a crash never leaves a half-written tokenizer file behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
