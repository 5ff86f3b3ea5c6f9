"""Sentencepiece models: Llama 2, Mistral v0.1, Phi-3, CodeLlama (`tokenizer.model`), and the
`.model` rebuilt from a GGUF's `llama` vocabulary (recipe R1 in research/offline-assets.md).

Encoding is `SentencePieceProcessor.encode` itself. Before loading, the model's pieces are
adjusted in memory: user-defined pieces that look like markers (`▁<PRE>`, `</s>`) become control
pieces, because sentencepiece matches user-defined pieces inside any text, and a file that
contains `<PRE>` must not produce the FIM marker. Control pieces are matched only by
`Tokenizer.encode_special`.

Each stretch of text between two special tokens gets sentencepiece's dummy prefix (a leading
`▁`), as Meta's and Mistral's reference code do (they encode each turn separately) and as Hugging
Face's "legacy" Llama tokenizers do when the rendered chat prompt is encoded.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from runtime.errors import TokenizerError
from runtime.tokenizer.base import AddedToken, looks_like_markup

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class SentencePieceCodec:
    """Text <-> ids through a loaded `SentencePieceProcessor`."""

    def __init__(self, model: pb.ModelProto):
        self.proto = model
        self.sp = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
        self.size = self.sp.get_piece_size()
        self._no_prefix: spm.SentencePieceProcessor | None = None
        self._bytes: list[bytes] = []
        self._strip: list[bool] = []
        unk_surface = " \u2047 ".encode()  # sentencepiece's default unknown surface
        for piece in model.pieces:
            if piece.type == BYTE:
                data, strip = bytes([int(piece.piece[3:5], 16)]), False
            elif piece.type in (NORMAL, USER_DEFINED):
                data, strip = piece.piece.replace("\u2581", " ").encode("utf-8"), True
            elif piece.type == UNKNOWN:
                data, strip = unk_surface, False
            else:  # control, unused
                data, strip = b"", False
            self._bytes.append(data)
            self._strip.append(strip)

    def encode_text(self, text: str, dummy_prefix: bool = True) -> list[int]:
        if not text:
            return []
        return (self.sp if dummy_prefix else self._sp_without_prefix()).encode(text)

    def _sp_without_prefix(self) -> spm.SentencePieceProcessor:
        if self._no_prefix is None:
            model = pb.ModelProto()
            model.CopyFrom(self.proto)
            model.normalizer_spec.add_dummy_prefix = False
            self._no_prefix = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
        return self._no_prefix

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def strips_leading_space(self, token_id: int) -> bool:
        return self._strip[token_id] and self.proto.normalizer_spec.add_dummy_prefix

    def piece_to_id(self, piece: str) -> int | None:
        token_id = self.sp.piece_to_id(piece)
        return None if token_id == self.sp.unk_id() and piece != self.sp.id_to_piece(token_id) else token_id

    def control_tokens(self) -> list[AddedToken]:
        return [
            AddedToken(p.piece, i, special=True)
            for i, p in enumerate(self.proto.pieces)
            if p.type == CONTROL
        ]


def read_model_proto(path: Path) -> pb.ModelProto:
    model = pb.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf raises DecodeError, sometimes RuntimeWarning-ish errors
        raise TokenizerError(f"{path} is not a sentencepiece model ({err}); re-download it.") from err
    if not model.pieces:
        raise TokenizerError(f"{path} holds no sentencepiece pieces; re-download it.")
    return model


def harden_markers(model: pb.ModelProto) -> pb.ModelProto:
    """Turn marker-like user-defined pieces into control pieces (see the module docstring)."""
    for piece in model.pieces:
        if piece.type == USER_DEFINED and looks_like_markup(piece.piece.lstrip("\u2581")):
            piece.type = CONTROL
    return model


def proto_from_gguf_vocab(
    tokens: list[str], scores: list[float], types: list[int], *, unk_id: int, bos_id: int | None,
    eos_id: int | None, add_space_prefix: bool = True,
) -> pb.ModelProto:
    """A sentencepiece BPE model equal to a GGUF `llama` vocabulary (recipe R1)."""
    model = pb.ModelProto()
    for i, (text, score, kind) in enumerate(zip(tokens, scores, types)):
        piece = model.pieces.add()
        piece.piece, piece.score = text, float(score)
        if i == unk_id:
            kind = UNKNOWN
        elif kind == UNKNOWN:  # Phi-3's [PADnnnnn]; sentencepiece allows one unknown piece
            kind = UNUSED
        elif kind not in (NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE):
            kind = NORMAL
        piece.type = kind
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(model.pieces)
    spec.byte_fallback = True
    spec.unk_id = unk_id
    spec.bos_id = -1 if bos_id is None else bos_id
    spec.eos_id = -1 if eos_id is None else eos_id
    spec.pad_id = -1
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = add_space_prefix
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return model
