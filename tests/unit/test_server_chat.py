"""Chat prompt assembly: editor context, token budgets, message order."""

from lsp_server.chat import SYSTEM_PROMPT, chat_messages, clip_tokens, context_from_document, user_message


def tokenizer():
    from runtime.tokenizer import load_tokenizer
    from tests.assets import smollm2_gguf

    return load_tokenizer(smollm2_gguf())


SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def test_selection_or_whole_document_as_context():
    selected = context_from_document(SOURCE, "m.py", "python", (4, 0), (5, 16))
    assert selected.selected and selected.text == "def sub(a, b):\n    return a - b"
    # reversed and out-of-range selections are normalized and clamped
    assert context_from_document(SOURCE, "m.py", "python", (99, 0), (4, 0)).text.startswith("def sub")
    whole = context_from_document(SOURCE, "m.py", "python", None, None)
    assert not whole.selected and whole.text == SOURCE


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
