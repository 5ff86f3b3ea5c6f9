"""Byte-level BPE (GPT-2, Phi-2, SmolLM2, Qwen2, Llama 3, DeepSeek-Coder, StarCoder), on tiktoken.

The vocabulary arrives as token strings in GPT-2's byte alphabet (`Ġ` for a space byte) plus a
merge list; the merge list's order, not the token ids, decides which pair merges first. tiktoken
does the merging in Rust: it merges the adjacent pair whose concatenation has the lowest rank, so
each merge result gets its merge's position as rank (plus 256 for the single bytes). Where ids
already grow in merge order (every vocabulary tested) the ids themselves serve as ranks and no
translation is needed; otherwise ranks are mapped back to ids after encoding.

Text is first split by the model's pre-tokenizer passes (`pretokenizers.py`). A single pass that
covers all text goes straight to tiktoken as its own split pattern; with several passes (StarCoder
splits digits first, DeepSeek-Coder runs five passes) the earlier passes run here with `regex`
and tiktoken encodes each resulting piece whole.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import regex
import tiktoken

from runtime.errors import TokenizerError
from runtime.tokenizer.pretokenizers import Splitter, covers_all_text

WHOLE_PIECE = r"[\s\S]+"
DROPPED = -1


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


@lru_cache(maxsize=1)
def _alphabet_tables() -> tuple[dict[int, str], regex.Pattern]:
    to_latin1 = {ord(c): chr(b) for b, c in bytes_to_unicode().items()}
    outside = regex.compile("[^" + regex.escape("".join(bytes_to_unicode().values())) + "]")
    return to_latin1, outside


def token_to_bytes(token: str) -> bytes | None:
    """Bytes of a vocabulary string in GPT-2's alphabet; None if it uses other characters."""
    to_latin1, outside = _alphabet_tables()
    if outside.search(token):
        return None
    return token.translate(to_latin1).encode("latin-1")  # each character now stands for its byte


class ByteLevelBPE:
    """Codec for a byte-level BPE vocabulary (see the module docstring)."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        passes: tuple[str, ...],
        *,
        normalizer: str | None = None,
        name: str = "bpe",
    ):
        self.size = max(vocab.values()) + 1
        self.normalizer = normalizer
        self._pieces = {token: i for token, i in vocab.items()}
        self._bytes: list[bytes] = [b""] * self.size
        encoded = {token: token_to_bytes(token) for token in vocab}
        for token, i in vocab.items():
            data = encoded[token]
            self._bytes[i] = data if data is not None else token.encode("utf-8")
        ranks, self._rank_to_id = _merge_ranks(vocab, encoded, merges)
        if passes and covers_all_text(passes[-1]):
            pre_passes, pattern = passes[:-1], passes[-1]
        else:
            pre_passes, pattern = passes, WHOLE_PIECE
        self._splitter = Splitter(pre_passes) if pre_passes else None
        try:
            self._tiktoken = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        except ValueError as err:
            raise TokenizerError(f"The tokenizer's split pattern is not usable: {err}") from err

    def encode_text(self, text: str, dummy_prefix: bool = True) -> list[int]:
        if not text:
            return []
        if self.normalizer == "NFC":
            text = unicodedata.normalize("NFC", text)
        if self._splitter is None:
            ranks = self._tiktoken.encode_ordinary(text)
        else:
            ranks = [r for piece in self._splitter.split(text) for r in self._tiktoken.encode_ordinary(piece)]
        if self._rank_to_id is not None:
            ids = [self._rank_to_id[r] for r in ranks]
            return [i for i in ids if i != DROPPED] if DROPPED in ids else ids
        return ranks

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def strips_leading_space(self, token_id: int) -> bool:
        return False

    def piece_to_id(self, piece: str) -> int | None:
        return self._pieces.get(piece)


def _merge_ranks(
    vocab: dict[str, int], encoded: dict[str, bytes | None], merges: list[tuple[str, str]]
) -> tuple[dict[bytes, int], list[int] | None]:
    """tiktoken ranks for the single bytes and every merge result, and a rank -> id table when
    ids do not follow merge order (None when ranks are the ids)."""
    singles: dict[bytes, int] = {}
    missing: list[bytes] = []
    for b, char in bytes_to_unicode().items():
        if char in vocab:
            singles[bytes([b])] = vocab[char]
        else:  # StarCoder lacks bytes of unassigned planes; such text is dropped, as HF does
            missing.append(bytes([b]))
    results: list[tuple[bytes, int]] = []
    seen: set[bytes] = set(singles)
    for left, right in merges:
        token = left + right
        token_id = vocab.get(token)
        data = encoded.get(token)
        if token_id is None or data is None:
            raise TokenizerError(
                f"The merge {left!r} + {right!r} makes a token that is not in the vocabulary; the "
                "tokenizer files do not belong together. Re-download them."
            )
        if data not in seen:  # the first merge that makes a string decides its priority
            seen.add(data)
            results.append((data, token_id))
    ids_in_order = [i for _, i in results]
    monotonic = all(a < b for a, b in zip(ids_in_order, ids_in_order[1:]))
    if monotonic and not missing:  # single-byte ranks never decide a merge: any ids will do
        ranks = dict(singles)
        ranks.update(results)
        return ranks, None
    ordered = [*singles.items(), *results]
    ranks = {data: rank for rank, (data, _) in enumerate(ordered)}
    rank_to_id = [token_id for _, token_id in ordered]
    for data in missing:  # tiktoken needs every byte; DROPPED marks the ones to leave out
        ranks[data] = len(rank_to_id)
        rank_to_id.append(DROPPED)
    return ranks, rank_to_id

