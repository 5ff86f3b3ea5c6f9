"""Pre-tokenizer split patterns: how text is cut into words before byte-level BPE.

A byte-level BPE vocabulary was trained on text split by a particular regex sequence; encoding
with another split gives different ids. The sequence comes from the checkpoint itself: the
`Split`/`ByteLevel`/`Digits` steps of a `tokenizer.json`, or, for a GGUF, the name in
`tokenizer.ggml.pre`, mapped to the regexes llama.cpp uses (`src/llama-vocab.cpp`).

Each pass works like Hugging Face's `Split(behavior="Isolated")` and llama.cpp's
`unicode_regex_split`: matches and the text between them both become pieces, and the next pass
splits every piece again.
"""

from __future__ import annotations

from collections.abc import Iterator

import regex

from runtime.errors import TokenizerError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
DIGIT_PATTERN = r"\p{N}"

# tokenizer.ggml.pre -> the regex passes llama.cpp runs for it (same order, same meaning).
GGUF_PRE_PASSES: dict[str, tuple[str, ...]] = {
    "gpt-2": (GPT2_PATTERN,),
    "phi-2": (GPT2_PATTERN,),
    "mpt": (GPT2_PATTERN,),
    "olmo": (GPT2_PATTERN,),
    "llama3": (LLAMA3_PATTERN,),
    "llama-v3": (LLAMA3_PATTERN,),
    "llama-bpe": (LLAMA3_PATTERN,),
    "dbrx": (LLAMA3_PATTERN,),
    "smaug-bpe": (LLAMA3_PATTERN,),
    "qwen2": (QWEN2_PATTERN,),
    "deepseek-r1-qwen": (QWEN2_PATTERN,),
    "stablelm2": (QWEN2_PATTERN,),
    "starcoder": (DIGIT_PATTERN, GPT2_PATTERN),
    "smollm": (DIGIT_PATTERN, GPT2_PATTERN),
    "refact": (DIGIT_PATTERN, GPT2_PATTERN),
    "codeshell": (DIGIT_PATTERN, GPT2_PATTERN),
    "deepseek-coder": (
        r"[\r\n]",
        r"\s?\p{L}+",
        r"\s?\p{P}+",
        r"[一-龥ࠀ-一가-퟿]+",
        r"\p{N}",
    ),
    "falcon": (
        r"[\p{P}\$\+<=>\^~\|`]+",
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
        r"[0-9][0-9][0-9]",
    ),
    # llama.cpp's fallback for BPE files without a known pre-tokenizer name.
    "default": (
        r"[\p{P}\$\+<=>\^~\|]+",
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
        r"\p{N}+",
        r"[0-9][0-9][0-9]",
    ),
}


def gguf_pre_passes(pre: str | None) -> tuple[str, ...]:
    """The split passes for a GGUF's `tokenizer.ggml.pre` value."""
    name = pre or "default"
    if name not in GGUF_PRE_PASSES:
        known = ", ".join(sorted(GGUF_PRE_PASSES))
        raise TokenizerError(
            f"This GGUF uses the pre-tokenizer {name!r}, which Quill does not know; its ids would "
            f"come out wrong. Use a GGUF whose tokenizer.ggml.pre is one of: {known}, or the "
            "model's Hugging Face repo instead."
        )
    return GGUF_PRE_PASSES[name]


def hf_pre_passes(pre_tokenizer: dict | None) -> tuple[str, ...]:
    """The split passes of a `tokenizer.json` pre_tokenizer (byte-level BPE models)."""
    if pre_tokenizer is None:
        return ()
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        return tuple(p for step in pre_tokenizer["pretokenizers"] for p in hf_pre_passes(step))
    if kind == "ByteLevel":
        return (GPT2_PATTERN,) if pre_tokenizer.get("use_regex", True) else ()
    if kind == "Digits":
        return (r"\p{N}",) if pre_tokenizer.get("individual_digits") else (r"\p{N}+",)
    if kind == "Split":
        pattern = pre_tokenizer["pattern"]
        behavior = pre_tokenizer.get("behavior", "Isolated")
        if behavior != "Isolated" or pre_tokenizer.get("invert"):
            raise TokenizerError(
                f"tokenizer.json splits with behavior {behavior!r}; Quill reads only 'Isolated' "
                "splits. Use a GGUF or another copy of this model's tokenizer."
            )
        return (pattern["Regex"] if "Regex" in pattern else regex.escape(pattern["String"]),)
    raise TokenizerError(
        f"tokenizer.json uses the pre-tokenizer {kind!r}, which Quill does not read for "
        "byte-level BPE models. Use a GGUF or another copy of this model's tokenizer."
    )


def covers_all_text(pattern: str) -> bool:
    """Whether every character ends up in some match, as tiktoken (which drops the text between
    matches) needs. True for the GPT-2 family of patterns, which end in a bare `\\s+` branch after
    branches for letters, digits and everything else."""
    return pattern.endswith(r"|\s+") and r"[^\s\p{L}\p{N}]" in pattern


class Splitter:
    """Applies a sequence of isolating regex passes to text."""

    def __init__(self, passes: tuple[str, ...]):
        try:
            self.passes = tuple(regex.compile(p) for p in passes)
        except regex.error as err:
            raise TokenizerError(f"The tokenizer's split pattern does not compile: {err}") from err

    def split(self, text: str) -> list[str]:
        pieces = [text]
        for pattern in self.passes:
            pieces = [part for piece in pieces for part in _isolate(pattern, piece)]
        return pieces


def _isolate(pattern: regex.Pattern, text: str) -> Iterator[str]:
    start = 0
    for match in pattern.finditer(text):
        if match.start() == match.end():
            continue
        if match.start() > start:
            yield text[start : match.start()]
        yield match.group()
        start = match.end()
    if start < len(text):
        yield text[start:]
