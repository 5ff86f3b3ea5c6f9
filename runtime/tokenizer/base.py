"""The `Tokenizer` every model gets, whatever its files: a codec plus added tokens.

A codec (`bpe.ByteLevelBPE`, `sentencepiece_tokenizer.SentencePieceCodec`) knows the model's own
vocabulary: text -> ids with no special handling, id -> bytes. On top of it sit the added tokens
(`<|im_end|>`, `<|eot_id|>`, `[INST]`, FIM markers, ...), matched by exact string:

- `encode(text)` is for text from users and files. Special tokens in it stay ordinary text, so a
  file containing `<|im_end|>` cannot end a chat turn. Only non-special added tokens (whitespace
  runs of CodeGen, for instance) are matched, as Hugging Face does.
- `encode_special(text)` also turns special-token strings into their ids; only prompt builders
  call it, on template text they control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import regex

from runtime.tokenizer.detokenizer import IncrementalDecoder, decode_ids

# Names of tokens that end a turn or a document in the supported families.
END_OF_TURN_NAMES = (
    "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|end|>", "<|im_end|>", "<|endoftext|>",
    "</s>", "<|EOT|>", "<｜end▁of▁sentence｜>", "<end_of_turn>", "<EOT>", "▁<EOT>",
)  # fmt: skip


@dataclass(frozen=True)
class AddedToken:
    content: str
    id: int
    special: bool = True
    lstrip: bool = False  # swallow whitespace before the token (HF AddedToken semantics)
    rstrip: bool = False  # swallow whitespace after it


def looks_like_markup(content: str) -> bool:
    """`<...>` / `[...]` tokens are control markers even where a file calls them user-defined
    (llama.cpp marks DeepSeek-Coder's FIM tokens so); they must never come from user text."""
    return len(content) > 2 and (
        (content[0] == "<" and content[-1] == ">") or (content[0] == "[" and content[-1] == "]")
    )


class Codec(Protocol):
    size: int  # ids 0..size-1 belong to the codec's vocabulary

    def encode_text(self, text: str, dummy_prefix: bool = True) -> list[int]: ...
    def token_bytes(self, token_id: int) -> bytes: ...
    def piece_to_id(self, piece: str) -> int | None: ...
    def strips_leading_space(self, token_id: int) -> bool: ...


_SURROGATE = regex.compile("[\ud800-\udfff]")


def _well_formed(text: str) -> str:
    """Lone surrogates (possible in JSON from an editor) become U+FFFD, as UTF-8 requires."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


class _Matcher:
    """Finds added tokens in text: longest first, leftmost, with HF's lstrip/rstrip."""

    def __init__(self, tokens: list[AddedToken]):
        self.by_content = {t.content: t for t in tokens}
        parts = []
        for t in sorted(tokens, key=lambda t: -len(t.content)):
            parts.append(
                (r"\s*" if t.lstrip else "") + f"({regex.escape(t.content)})" + (r"\s*" if t.rstrip else "")
            )
        self.pattern = regex.compile("|".join(parts)) if parts else None

    def split(self, text: str) -> list[str | AddedToken]:
        if self.pattern is None or not text:
            return [text] if text else []
        out: list[str | AddedToken] = []
        start = 0
        for match in self.pattern.finditer(text):
            if match.start() > start:
                out.append(text[start : match.start()])
            content = next(g for g in match.groups() if g is not None)
            out.append(self.by_content[content])
            start = match.end()
        if start < len(text):
            out.append(text[start:])
        return out


class Tokenizer:
    """Text <-> ids for one model. See the module docstring for encode vs encode_special."""

    def __init__(
        self,
        codec: Codec,
        added_tokens: list[AddedToken],
        *,
        bos_id: int | None,
        eos_id: int | None,
        add_bos: bool,
        extra_stop_ids: tuple[int, ...] = (),
    ):
        self.codec = codec
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        self.added_tokens = {t.id: t for t in added_tokens}
        self.special_tokens = {t.content: t.id for t in added_tokens if t.special}
        self._plain = _Matcher([t for t in added_tokens if not t.special])
        self._all = _Matcher(added_tokens)
        self.vocab_size = max([codec.size - 1, *self.added_tokens]) + 1
        stops = {i for i in (eos_id, *extra_stop_ids) if i is not None}
        stops.update(self.special_tokens[n] for n in END_OF_TURN_NAMES if n in self.special_tokens)
        self.stop_ids = frozenset(stops)

    # --- encoding ---------------------------------------------------------------------------

    def encode(self, text: str, *, dummy_prefix: bool = True) -> list[int]:
        """Ids of `text` as plain text: special-token strings are encoded like any other text.
        `dummy_prefix=False` leaves out sentencepiece's leading `▁` (for text that continues
        other text, like a FIM suffix); byte-level vocabularies have none."""
        return self._encode_parts(self._plain.split(_well_formed(text)), dummy_prefix)

    def encode_special(self, text: str) -> list[int]:
        """Ids of prompt-template text, where special-token strings become their special ids."""
        return self._encode_parts(self._all.split(_well_formed(text)))

    def _encode_parts(self, parts: list[str | AddedToken], dummy_prefix: bool = True) -> list[int]:
        ids: list[int] = []
        for n, part in enumerate(parts):
            if isinstance(part, AddedToken):
                ids.append(part.id)
            else:
                ids.extend(self.codec.encode_text(part, dummy_prefix or n > 0))
        return ids

    def encode_segments(self, segments: list[tuple[str, bool]]) -> list[int]:
        """Ids of text pieces, each `(text, may_hold_specials)`: specials are matched only in the
        pieces marked True, while the text between two specials is encoded as one run whatever
        pieces it spans, so the ids equal those of encoding the joined text with specials."""
        parts: list[str | AddedToken] = []
        for text, allow in segments:
            for part in (self._all if allow else self._plain).split(_well_formed(text)):
                if isinstance(part, str) and parts and isinstance(parts[-1], str):
                    parts[-1] += part
                else:
                    parts.append(part)
        return self._encode_parts(parts)

    # --- decoding ---------------------------------------------------------------------------

    def token_bytes(self, token_id: int) -> bytes:
        added = self.added_tokens.get(token_id)
        if added is not None:
            return b"" if added.special else added.content.encode("utf-8")
        if 0 <= token_id < self.codec.size:
            return self.codec.token_bytes(token_id)
        return b""

    def strips_leading_space(self, token_id: int) -> bool:
        return token_id not in self.added_tokens and self.codec.strips_leading_space(token_id)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; special tokens produce no text."""
        return decode_ids(self, ids)

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)

    def token_to_id(self, piece: str) -> int | None:
        """Id of an added token by its text, or of a vocabulary entry by its stored spelling
        (`Ġhello`, `▁<PRE>`)."""
        added = self._all.by_content.get(piece)
        return added.id if added is not None else self.codec.piece_to_id(piece)

    def __repr__(self) -> str:
        return f"Tokenizer({type(self.codec).__name__}, vocab_size={self.vocab_size})"
