"""History clipping in `build_chat_prompt`, on a small in-memory byte-level vocabulary (one token
per byte) with a ChatML template: the oldest user/assistant pair goes first, the system message
and the last user message always stay, and the last user message loses its start only when
nothing else is left to drop."""

from __future__ import annotations

import pytest

from runtime.errors import PromptTemplateError
from runtime.prompts import ChatFormat, build_chat_prompt, encode_chat
from runtime.tokenizer.base import AddedToken, Tokenizer
from runtime.tokenizer.bpe import ByteLevelBPE, bytes_to_unicode
from runtime.tokenizer.pretokenizers import GPT2_PATTERN

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    alphabet = bytes_to_unicode()
    codec = ByteLevelBPE({alphabet[b]: b for b in range(256)}, [], (GPT2_PATTERN,))
    specials = [AddedToken("<|im_start|>", 256), AddedToken("<|im_end|>", 257)]
    return Tokenizer(codec, specials, bos_id=None, eos_id=257, add_bos=False)


FMT = ChatFormat(template=CHATML)
SYSTEM = {"role": "system", "content": "Be brief."}
PAIRS = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(4)]
LAST = {"role": "user", "content": "last question"}


def length(tokenizer, messages) -> int:
    return len(encode_chat(tokenizer, FMT, messages))


def flat(pairs):
    return [m for p in pairs for m in p]


def test_everything_fits(tokenizer):
    messages = [SYSTEM, *flat(PAIRS), LAST]
    assert build_chat_prompt(tokenizer, FMT, messages, 10_000) == encode_chat(tokenizer, FMT, messages)


@pytest.mark.parametrize("kept", [0, 1, 2, 3])
def test_oldest_pairs_go_first(tokenizer, kept):
    want = [SYSTEM, *flat(PAIRS[4 - kept :]), LAST]
    budget = length(tokenizer, want)  # exactly what `kept` pairs need; one pair more does not fit
    assert build_chat_prompt(tokenizer, FMT, [SYSTEM, *flat(PAIRS), LAST], budget) == encode_chat(tokenizer, FMT, want)


def test_without_system_message(tokenizer):
    want = [*flat(PAIRS[3:]), LAST]
    ids = build_chat_prompt(tokenizer, FMT, [*flat(PAIRS), LAST], length(tokenizer, want))
    assert ids == encode_chat(tokenizer, FMT, want)


def test_history_starting_with_assistant_drops_it_alone(tokenizer):
    messages = [SYSTEM, PAIRS[0][1], *flat(PAIRS[1:]), LAST]
    want = [SYSTEM, *flat(PAIRS[1:]), LAST]
    assert build_chat_prompt(tokenizer, FMT, messages, length(tokenizer, want)) == encode_chat(tokenizer, FMT, want)


def test_last_user_message_loses_its_start(tokenizer):
    long_last = {"role": "user", "content": "x" * 200 + "END"}
    budget = length(tokenizer, [SYSTEM, {"role": "user", "content": ""}]) + 50
    ids = build_chat_prompt(tokenizer, FMT, [SYSTEM, *flat(PAIRS), long_last], budget)
    text = tokenizer.decode(ids)
    assert len(ids) <= budget and text.startswith("system\nBe brief.") and text.endswith("xEND\nassistant\n")
    assert "q3" not in text


def test_budget_below_the_frame_raises(tokenizer):
    with pytest.raises(PromptTemplateError, match="maxContextLength"):
        build_chat_prompt(tokenizer, FMT, [SYSTEM, LAST], 10)
