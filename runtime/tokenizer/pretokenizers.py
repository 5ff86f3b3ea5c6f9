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
QWEN35_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"""
    r"""| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
DIGIT_PATTERN = r"\p{N}"
CJK_RUN = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
# DeepSeek-LLM's letter class: llama.cpp's enumeration of cased letters (not \p{L}).
DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376"
    "\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f"
    "\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
    "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4"
    "\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)

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
    "qwen35": (QWEN35_PATTERN,),
    "starcoder": (DIGIT_PATTERN, GPT2_PATTERN),
    "command-r": (DIGIT_PATTERN, GPT2_PATTERN),
    "smollm": (DIGIT_PATTERN, GPT2_PATTERN),
    "refact": (DIGIT_PATTERN, GPT2_PATTERN),
    "codeshell": (DIGIT_PATTERN, GPT2_PATTERN),
    "deepseek-coder": (
        r"[\r\n]",
        r"\s?\p{L}+",
        r"\s?\p{P}+",
        CJK_RUN,
        r"\p{N}",
    ),
    "deepseek-llm": (
        r"[\r\n]",
        DEEPSEEK_LLM_LETTERS,
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
        r"\s+$",
        CJK_RUN,
        r"\p{N}+",
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


# Letters, marks, digits, punctuation, symbols, spaces, controls, CJK, emoji, astral letters.
_PROBE = "Hello, wörld! it's I'LL 123 ½ ⅷ e\u0301 日本語 한국 🦙\u200d🦙 \t\n\r\n  \x00\x7f ¬~`|$+<=>^ … ＡＢ 𝔘 \u3000x "


def covers_all_text(pattern: str) -> bool:
    """Whether the pattern's matches cover all of a probe text of every character class, as
    tiktoken (which drops the text between matches) needs. True for the GPT-2 family of patterns,
    whose last branches catch whatever the others leave."""
    try:
        return "".join(regex.findall(pattern, _PROBE)) == _PROBE
    except regex.error:
        return False


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
