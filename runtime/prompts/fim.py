"""Fill-in-the-middle prompts for models whose vocabulary has FIM tokens.

Detected from the vocabulary, never from the model's name (`_FAMILIES`):

- Qwen2.5-Coder: `<|fim_prefix|>` `<|fim_suffix|>` `<|fim_middle|>`, stops at `<|fim_pad|>`,
  `<|file_sep|>`, `<|endoftext|>`; no BOS.
- StarCoder: `<fim_prefix>` `<fim_suffix>` `<fim_middle>`, stops at `<fim_pad>`, `<file_sep>`; no BOS.
- DeepSeek-Coder: `<｜fim▁begin｜>` `<｜fim▁hole｜>` `<｜fim▁end｜>`, stops at `<|EOT|>`; BOS first.
- CodeLlama: `▁<PRE>` `▁<SUF>` `▁<MID>`, stops at `▁<EOT>`; BOS first.

All use prefix-suffix-middle order: `[BOS] PRE prefix SUF suffix MID`, then the model writes the
middle. CodeLlama (Meta's `infilling_prompt_tokens`) encodes the suffix without sentencepiece's
dummy-prefix space; `FimFormat.encode_suffix` does that. Models without FIM tokens get `None`, and
the caller continues the prefix instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.tokenizer.base import Tokenizer

@dataclass(frozen=True)
class _Family:
    name: str
    markers: tuple[str, str, str]  # prefix, suffix, middle
    stops: tuple[str, ...]
    uses_bos: bool = False
    suffix_without_space: bool = False


_FAMILIES = (
    _Family("qwen", ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
            ("<|fim_pad|>", "<|file_sep|>", "<|endoftext|>", "<|repo_name|>")),
    _Family("starcoder", ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), ("<fim_pad>", "<file_sep>", "<|endoftext|>")),
    _Family("deepseek", ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"), ("<|EOT|>", "<｜end▁of▁sentence｜>"),
            uses_bos=True),
    _Family("codellama", ("▁<PRE>", "▁<SUF>", "▁<MID>"), ("▁<EOT>",), uses_bos=True, suffix_without_space=True),
    _Family("codellama", ("<PRE>", "<SUF>", "<MID>"), ("<EOT>",), uses_bos=True, suffix_without_space=True),
)  # fmt: skip


@dataclass(frozen=True)
class FimFormat:
    name: str
    prefix_id: int
    suffix_id: int
    middle_id: int
    bos_id: int | None
    stop_ids: frozenset[int]
    suffix_without_space: bool = False

    def build(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """`[BOS] PRE prefix SUF suffix MID` as ids."""
        head = [self.bos_id] if self.bos_id is not None else []
        return [*head, self.prefix_id, *prefix_ids, self.suffix_id, *suffix_ids, self.middle_id]

    def encode_suffix(self, tokenizer: Tokenizer, suffix: str) -> list[int]:
        """Suffix ids as the family expects (no dummy-prefix space for CodeLlama)."""
        return tokenizer.encode(suffix, dummy_prefix=not self.suffix_without_space)

    def build_text(self, tokenizer: Tokenizer, prefix: str, suffix: str) -> list[int]:
        return self.build(tokenizer.encode(prefix), self.encode_suffix(tokenizer, suffix))


def detect_fim(tokenizer: Tokenizer) -> FimFormat | None:
    """The FIM format this vocabulary supports, or None."""
    for family in _FAMILIES:
        ids = [tokenizer.token_to_id(t) for t in family.markers]
        if None in ids:
            continue
        stop_ids = set(tokenizer.stop_ids)
        stop_ids.update(i for t in family.stops if (i := tokenizer.token_to_id(t)) is not None)
        return FimFormat(
            family.name, *ids,
            bos_id=tokenizer.bos_id if family.uses_bos and tokenizer.add_bos else None,
            stop_ids=frozenset(stop_ids), suffix_without_space=family.suffix_without_space,
        )  # fmt: skip
    return None
