"""The prompt stage with real vocabularies from llama.cpp's vocab-only GGUFs (no weights): prefix
continuation (GPT-2's vocabulary has no FIM tokens) and FIM (StarCoder's has)."""

from functools import cache

import pytest

from lsp_server.completion_prompt import build_completion_prompt
from lsp_server.completion_window import cursor_window
from runtime.prompts import detect_fim
from runtime.tokenizer import load_tokenizer
from tests.assets import llama_cpp_models_dir

TEXT = "import os\n\n" + "x = 1\n" * 2000 + "def f(folder):\n    \nprint(f('.'))\n"
WINDOW = cursor_window(TEXT, TEXT.count("\n") - 2, 4, max_chars=8 * 256)


@cache
def vocab(name: str):
    return load_tokenizer(llama_cpp_models_dir() / f"ggml-vocab-{name}.gguf")


def test_prefix_continuation_opens_a_code_fence():
    gpt2 = vocab("gpt-2")
    assert detect_fim(gpt2) is None
    prompt = build_completion_prompt(gpt2, None, WINDOW, 256, "python")
    assert gpt2.decode(prompt.ids).startswith("```python\n")
    assert gpt2.decode(prompt.ids).endswith("def f(folder):\n    ")
    assert not prompt.fim and prompt.prefix_tokens == 256 and prompt.suffix_tokens == 0
    assert prompt.stop_strings == ("```",) and prompt.stop_ids == frozenset(gpt2.stop_ids)


@pytest.mark.parametrize("language", ["python", ""])
def test_fim_splits_the_budget_between_prefix_and_suffix(language):
    starcoder = vocab("starcoder")
    fim = detect_fim(starcoder)
    assert fim is not None
    prompt = build_completion_prompt(starcoder, fim, WINDOW, 256, language)
    assert prompt.fim and prompt.prefix_tokens == 192 and 0 < prompt.suffix_tokens <= 64
    assert prompt.ids[0] == fim.prefix_id and prompt.ids[-1] == fim.middle_id
    assert fim.suffix_id in prompt.ids and prompt.stop_ids >= fim.stop_ids
    assert prompt.stop_strings == ()  # FIM ends on its own tokens, not on a fence
    assert "print(f('.'))" in starcoder.decode(prompt.ids)
