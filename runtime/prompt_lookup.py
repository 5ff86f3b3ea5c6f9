"""Prompt-lookup drafts: guess the next tokens by copying what followed an earlier match.

Code repeats its own context: names, argument lists, whole lines of the file being edited. When
the last few tokens of the sequence (prompt plus what was generated) occurred before, the tokens
that followed that occurrence are a cheap guess at what comes next. The guess costs no model: the
generation loop (`generate.py`) verifies it in one forward pass over all guessed tokens and keeps
the longest prefix that greedy decoding would have produced anyway, so the output never changes.

`PromptLookup` keeps an index from every n-gram (n = `min_ngram` .. `max_ngram`) to the end of its
most recent occurrence that has a token after it, updated as tokens are appended, so a lookup
is a few dict reads instead of a scan of a prompt of thousands of tokens. Longer n-grams are
tried first: a longer match predicts better.
"""

from __future__ import annotations

from typing import Iterable, Sequence

# Measured on SmolLM2-135M float32-int4, eager, two cores, 48 tokens after 300-token windows of
# Python files: a draft kept about 45% of its tokens (4 to 8 alike); one-token matches doubled
# the drafted rows for 10% more kept ones, and each verified row costs about a third of a step.
# The generation loop also shortens a draft after a rejection (`generate._decode_with_drafts`).
MAX_DRAFT = 6
# A generation's first draft: short, since a completion is often over within a few tokens and a
# long first draft of prose is mostly rejected. On the CPU typing replay (SmolLM2 float32-int4,
# compiled verification, 20 requests of 8 and 32 tokens after windows of argparse.py) a first
# draft of 6 was 4-8% slower than no drafts for 8-token requests; starting at 2 was even there
# and 7-10% faster for 32 tokens, with the same drafts kept.
FIRST_DRAFT = 2
MAX_NGRAM = 3
MIN_NGRAM = 2


class PromptLookup:
    """Drafts for the sequence `ids` (extended with `extend` as tokens are accepted)."""

    def __init__(self, ids: Sequence[int] = (), *, max_ngram: int = MAX_NGRAM, min_ngram: int = MIN_NGRAM):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram} and {max_ngram}")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.ids: list[int] = []
        # n-gram -> index just past its latest occurrence that some token follows. The n-grams
        # ending at the last token are indexed only when the next token arrives, so a lookup of
        # the sequence's own tail finds an earlier occurrence, never itself.
        self._ends: dict[tuple[int, ...], int] = {}
        self.extend(ids)

    def extend(self, new_ids: Iterable[int]) -> None:
        ids, ends = self.ids, self._ends
        for token in new_ids:
            end = len(ids)  # the n-grams ending just before `token` now have a follower
            for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                ends[tuple(ids[end - n : end])] = end
            ids.append(int(token))

    def draft(self, max_tokens: int) -> list[int]:
        """Up to `max_tokens` ids that followed the latest earlier occurrence of the longest
        matching tail n-gram; [] when no tail n-gram occurred before."""
        if max_tokens <= 0:
            return []
        ids = self.ids
        for n in range(min(self.max_ngram, len(ids)), self.min_ngram - 1, -1):
            end = self._ends.get(tuple(ids[len(ids) - n :]))
            if end is not None:
                return ids[end : end + max_tokens]
        return []
