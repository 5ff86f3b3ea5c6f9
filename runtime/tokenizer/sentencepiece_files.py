"""Sentencepiece tokenizers from a checkpoint folder: `tokenizer.model` plus the added tokens
that `tokenizer.json`, `tokenizer_config.json` or `added_tokens.json` declare (Phi-3's
`<|user|>`, `<|end|>`... live only there, above the model's 32000 pieces)."""

from __future__ import annotations

from pathlib import Path

from runtime.tokenizer.base import Tokenizer
from runtime.tokenizer.hf_files import (
    added_from_entry,
    config_added_tokens,
    generation_stop_ids,
    id_of,
    read_config,
    read_json,
    token_text,
)
from runtime.tokenizer.sentencepiece_tokenizer import SentencePieceCodec, harden_markers, read_model_proto


def sentencepiece_tokenizer(model_dir: Path) -> Tokenizer:
    codec = SentencePieceCodec(harden_markers(read_model_proto(model_dir / "tokenizer.model")))
    config = read_config(model_dir)
    declared = config_added_tokens(model_dir, config)
    if (model_dir / "tokenizer.json").exists():
        entries = read_json(model_dir / "tokenizer.json").get("added_tokens", [])
        declared += [added_from_entry(e, int(e["id"])) for e in entries]
    added = {t.id: t for t in codec.control_tokens()}
    for token in declared:
        inside = token.id < codec.size
        # A declared token inside the model only matters if it is a special the model lacks as
        # control (it then must be matchable by encode_special); above the model it is new.
        if not inside or (token.special and token.id not in added):
            added[token.id] = token
    tokens = list(added.values())
    sp = codec.sp
    bos = id_of(token_text(config.get("bos_token")), tokens, codec.piece_to_id)
    eos = id_of(token_text(config.get("eos_token")), tokens, codec.piece_to_id)
    bos = bos if bos is not None else (sp.bos_id() if sp.bos_id() >= 0 else None)
    eos = eos if eos is not None else (sp.eos_id() if sp.eos_id() >= 0 else None)
    return Tokenizer(
        codec, tokens, bos_id=bos, eos_id=eos,
        add_bos=bool(config.get("add_bos_token", True)) and bos is not None,
        extra_stop_ids=generation_stop_ids(model_dir),
    )  # fmt: skip


