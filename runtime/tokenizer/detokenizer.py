"""Turning token ids back into text, in one go or one token at a time while streaming.

Both paths share one state machine, so a stream's concatenated output always equals a one-shot
`decode` of the same ids:

1. each id becomes bytes (`Tokenizer.token_bytes`): byte-level BPE maps its alphabet back to
   bytes, sentencepiece turns `▁` into a space and `<0xNN>` pieces into that byte, special tokens
   become nothing;
2. sentencepiece drops the space its dummy prefix put in front of the first word, like
   `SentencePieceProcessor.decode`;
3. bytes go through an incremental UTF-8 decoder, which holds back an incomplete character until
   its last byte arrives and turns invalid bytes into U+FFFD the same way `bytes.decode` does.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.tokenizer.base import Tokenizer


class IncrementalDecoder:
    """`push(token_id)` returns the newly completed text; `flush()` returns what is left."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True

    def push(self, token_id: int) -> str:
        data = self._tokenizer.token_bytes(token_id)
        if not data:
            return ""
        if self._at_start:
            self._at_start = False
            if self._tokenizer.strips_leading_space(token_id) and data.startswith(b" "):
                data = data[1:]
        return self._utf8.decode(data)

    def flush(self) -> str:
        """Text of any trailing incomplete character (as U+FFFD); the decoder can be reused."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


def decode_ids(tokenizer: Tokenizer, ids: list[int]) -> str:
    decoder = IncrementalDecoder(tokenizer)
    return "".join(decoder.push(i) for i in ids) + decoder.flush()
