"""Chat prompt assembly: editor context, token budgets, message order. Budgets are counted with
GPT-2's real vocabulary from llama.cpp's vocab-only GGUF (no weights)."""

from functools import cache

from lsprotocol import types

from lsp_server.chat_context import context_from_document, editor_context
from lsp_server.chat_prompt import SYSTEM_PROMPT, build, chat_messages, clip_tokens, user_message
from runtime.prompts import ChatFormat
from runtime.tokenizer import load_tokenizer
from tests.assets import llama_cpp_models_dir

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@cache
def tokenizer():
    return load_tokenizer(llama_cpp_models_dir() / "ggml-vocab-gpt-2.gguf")


SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def test_selection_or_whole_document_as_context():
    selected = context_from_document(SOURCE, "m.py", "python", (4, 0), (5, 16))
    assert selected.selected and selected.text == "def sub(a, b):\n    return a - b"
    # reversed and out-of-range selections are normalized and clamped
    assert context_from_document(SOURCE, "m.py", "python", (99, 0), (4, 0)).text.startswith("def sub")
    whole = context_from_document(SOURCE, "m.py", "python", None, None)
    assert not whole.selected and whole.text == SOURCE


class Document:
    """The fields of a pygls text document that the chat context reads."""

    uri = "file:///work/pkg/m.py"
    source = SOURCE
    language_id = "python"


def test_editor_context_of_an_open_document():
    assert editor_context(None, None) is None
    whole = editor_context(Document(), None)
    assert (whole.name, whole.language, whole.text, whole.selected) == ("m.py", "python", SOURCE, False)
    selection = types.Range(types.Position(4, 0), types.Position(5, 16))
    assert editor_context(Document(), selection) == context_from_document(SOURCE, "m.py", "python", (4, 0), (5, 16))


def test_prompt_keeps_the_new_message_and_drops_the_oldest_exchange():
    tok = tokenizer()
    fmt = ChatFormat(template=CHATML)
    earlier = [{"role": "user", "content": "first " * 40}, {"role": "assistant", "content": "answer " * 40},
               {"role": "user", "content": "second"}, {"role": "assistant", "content": "fine"}]
    context = context_from_document(SOURCE, "m.py", "python", None, None)
    ids = build(tok, fmt, "What does sub do?", context, earlier, 200)
    text = tok.decode(ids)
    assert len(ids) <= 200 and "first" not in text and "second" in text
    assert text.endswith("What does sub do?<|im_end|>\n<|im_start|>assistant\n")
    assert "The open file (m.py):\n```python\ndef add" in text and SYSTEM_PROMPT in text


def test_user_message_puts_context_first_and_fits_the_budget():
    tok = tokenizer()
    context = context_from_document(SOURCE * 500, "m.py", "python", None, None)
    text = user_message(tok, "What does sub do?", context, 600)
    assert text.startswith("The open file (m.py):\n```python\ndef add")
    assert text.endswith("What does sub do?")
    assert len(tok.encode(text)) + len(tok.encode(SYSTEM_PROMPT)) <= 600


def test_a_huge_message_keeps_its_end():
    tok = tokenizer()
    message = "blah " * 20000 + "What is 2 + 2?"
    text = user_message(tok, message, None, 300)
    assert text.endswith("What is 2 + 2?") and len(tok.encode(text)) <= 300
    assert clip_tokens(tok, "short", 10, keep="head") == "short"
    assert clip_tokens(tok, "anything", 0, keep="tail") == ""


def test_messages_order():
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    messages = chat_messages(history, "new")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "new"
