"""Tokenizers described by a GGUF file's `tokenizer.ggml.*` metadata.

`tokenizer.ggml.model` says which kind: `llama` is a sentencepiece vocabulary (pieces, scores,
types), rebuilt into a sentencepiece model (recipe R1); `gpt2` is byte-level BPE (tokens in GPT-2's
byte alphabet plus merges), split by the passes named in `tokenizer.ggml.pre`.

Only the metadata header is read (`gguf_metadata.py`), never the tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import TokenizerError
from runtime.tokenizer.base import AddedToken, Tokenizer, looks_like_markup
from runtime.tokenizer.bpe import ByteLevelBPE, unicode_to_bytes
from runtime.tokenizer.gguf_metadata import read_gguf_metadata
from runtime.tokenizer.pretokenizers import gguf_pre_passes
from runtime.tokenizer.sentencepiece_tokenizer import SentencePieceCodec, harden_markers, proto_from_gguf_vocab

CONTROL, USER_DEFINED = 3, 4
LLAMA3_PRE_NAMES = {"llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe"}


def _require(meta: dict[str, Any], key: str, path: Path) -> Any:
    if key not in meta:
        raise TokenizerError(f"{path} has no {key}; it carries no usable tokenizer.")
    return meta[key]


def gguf_tokenizer(path: Path) -> Tokenizer:
    """A Tokenizer for the vocabulary inside a GGUF file."""
    meta = read_gguf_metadata(path)
    kind = meta.get("tokenizer.ggml.model")
    if kind == "llama":
        codec = SentencePieceCodec(gguf_sentencepiece_proto(meta, path))
        added = codec.control_tokens()
        add_bos = meta.get("tokenizer.ggml.add_bos_token", True)
    elif kind == "gpt2":
        codec, added = _byte_level(meta, path)
        pre = meta.get("tokenizer.ggml.pre")
        add_bos = meta.get("tokenizer.ggml.add_bos_token", pre in LLAMA3_PRE_NAMES)
    else:
        raise TokenizerError(
            f"{path} has a {kind!r} tokenizer; Quill reads GGUF tokenizers of kind 'llama' "
            "(sentencepiece) and 'gpt2' (byte-level BPE)."
        )
    return Tokenizer(
        codec, added,
        bos_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_id=meta.get("tokenizer.ggml.eos_token_id"),
        add_bos=bool(add_bos),
        extra_stop_ids=tuple(i for i in [meta.get("tokenizer.ggml.eot_token_id")] if i is not None),
    )  # fmt: skip


def gguf_sentencepiece_proto(meta: dict[str, Any], path: Path):
    tokens = _require(meta, "tokenizer.ggml.tokens", path)
    proto = proto_from_gguf_vocab(
        tokens,
        meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens),
        meta.get("tokenizer.ggml.token_type") or [1] * len(tokens),
        unk_id=meta.get("tokenizer.ggml.unknown_token_id", 0),
        bos_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_id=meta.get("tokenizer.ggml.eos_token_id"),
        add_space_prefix=meta.get("tokenizer.ggml.add_space_prefix", True),
    )
    return harden_markers(proto)


def byte_level_parts(meta: dict[str, Any], path: Path):
    """(vocab, merges, passes, added tokens) of a `gpt2` GGUF vocabulary."""
    tokens = _require(meta, "tokenizer.ggml.tokens", path)
    merges = [tuple(m.split(" ", 1)) for m in _require(meta, "tokenizer.ggml.merges", path)]
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    passes = gguf_pre_passes(meta.get("tokenizer.ggml.pre"))
    byte_chars = unicode_to_bytes()
    added = []
    for i, (token, kind) in enumerate(zip(tokens, types)):
        if kind == CONTROL:
            added.append(AddedToken(token, i, special=True))
        elif kind == USER_DEFINED and not (len(token) == 1 and token in byte_chars):
            # Single byte-alphabet characters (DeepSeek-Coder's 'õ'...) are byte tokens the base
            # vocabulary lacked, not added text.
            added.append(AddedToken(token, i, special=looks_like_markup(token)))
    return {t: i for i, t in enumerate(tokens)}, merges, passes, added


def _byte_level(meta: dict[str, Any], path: Path):
    vocab, merges, passes, added = byte_level_parts(meta, path)
    added_ids = {t.id for t in added}
    base = {t: i for t, i in vocab.items() if i not in added_ids}
    codec = ByteLevelBPE(base, merges, passes, name=f"gguf-{meta.get('tokenizer.ggml.pre')}")
    return codec, added
