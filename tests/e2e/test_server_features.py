"""The language server's features over stdio, on the real SmolLM2-135M-Instruct weights (CPU).

Each test starts `python -m lsp_server` with client capabilities recorded from VS Code and/or
Neovim, waits for the model's work-done progress to end, and checks what the protocol promises
(DESIGN.md): inline completion, the completion fallback, a streamed chat, status, settings.
"""

from __future__ import annotations

import pytest
from lsprotocol import types

from tests.e2e.conftest import CLIENTS, inline_params, open_document, print_numbers

pytestmark = pytest.mark.slow  # real weights, real server processes

SOURCE = """import os


def list_python_files(folder):
    
"""
CURSOR = (4, 4)  # the indented, empty body line of list_python_files()


def test_first_use_conversion_reports_progress(first_use):
    """The first server on an empty cache converts the GGUF, with begin/report/end progress."""
    reports = first_use["reports"]
    kinds = [type(r).__name__ for r in reports]
    messages = [r.message or "" for r in reports[1:-1]]
    print_numbers(progress_kinds=kinds[:3] + ["..."] + kinds[-2:], reports=len(reports), phases=sorted({m.split()[0] for m in messages}))
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd) and "ready" in reports[-1].message
    assert all(isinstance(r, types.WorkDoneProgressReport) for r in reports[1:-1])
    assert any(m.startswith("convert") for m in messages), messages
    assert any(m.startswith("load") for m in messages), messages
    # the percentage never goes backwards within a phase
    by_phase: dict[str, list[int]] = {}
    for r in reports[1:-1]:
        by_phase.setdefault(r.message.split()[0], []).append(r.percentage)
    assert all(p == sorted(p) for p in by_phase.values())
    assert first_use["status"]["state"] == "ready" and first_use["status"]["device"] == "cpu"
    assert first_use["cache"], "the converted model was not written to the cache dir"


def test_advertises_inline_completion_and_the_accept_command(server):
    capabilities = server.init_result.capabilities
    assert capabilities.inline_completion_provider is not None
    assert capabilities.completion_provider is not None
    assert "quill.acceptCompletion" in capabilities.execute_command_provider.commands


@pytest.mark.parametrize("editor", CLIENTS)
async def test_inline_completion_and_acceptance(server, editor):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    before = await server.request("quill/status", {})
    result = await server.text_document_inline_completion_async(inline_params(uri, *CURSOR))
    assert len(result.items) == 1
    item = result.items[0]
    print_numbers(editor=editor, suggestion=item.insert_text)
    assert item.insert_text.strip(), "an empty or whitespace-only suggestion was returned"
    assert item.range.start == item.range.end == types.Position(*CURSOR)
    # multi-line at a new block: it stays inside the function (no line dedented below the body)
    for line in item.insert_text.split("\n")[1:]:
        assert not line.strip() or line.startswith("    "), item.insert_text
    assert item.command.command == "quill.acceptCompletion"

    await server.workspace_execute_command_async(
        types.ExecuteCommandParams(command=item.command.command, arguments=item.command.arguments)
    )
    status = await server.request("quill/status", {})
    assert status["acceptance"] == {"shown": 1, "accepted": 1}
    assert status["completions"]["generated"] == 1 and status["generations"] == 1
    # token accounting: what the model generated for this request and what the suggestion shows
    print_numbers(tokens_generated=status["tokensGenerated"], tokens_shown=status["tokensShown"])
    assert (before["tokensGenerated"], before["tokensShown"]) == (0, 0)
    assert status["tokensGenerated"] == status["lastGeneration"]["tokens"] > 0
    assert status["tokensShown"] > 0


@pytest.mark.parametrize("editor", CLIENTS)
async def test_completion_fallback_gives_the_same_text(server, editor):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    inline = await server.text_document_inline_completion_async(inline_params(uri, *CURSOR))
    completion = await server.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri), position=types.Position(*CURSOR))
    )
    assert len(completion.items) == 1
    item = completion.items[0]
    print_numbers(editor=editor, label=item.label)
    assert item.text_edit.new_text == inline.items[0].insert_text  # no word before the cursor here
    assert item.command.command == "quill.acceptCompletion"
    # greedy decoding and the engine's prefix cache: the second request reused the prompt
    status = await server.request("quill/status", {})
    assert status["lastGeneration"]["reusedTokens"] > 0


async def test_mid_line_completion_is_single_line(server):
    text = "def area(width, height):\n    return width * height\n\n\nprint(area(3, ))\n"
    uri = open_document(server, server.workspace / "area.py", text)
    result = await server.text_document_inline_completion_async(inline_params(uri, 4, 14))
    print_numbers(items=[i.insert_text for i in result.items])
    assert len(result.items) == 1
    suggestion = result.items[0].insert_text
    assert "\n" not in suggestion and suggestion.strip()
    assert not suggestion.endswith("))"), "the closers already after the cursor were repeated"


@pytest.mark.parametrize("editor", CLIENTS)
async def test_chat_streams_deltas_that_add_up_to_the_reply(server, editor):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    token = "chat-1"
    result = await server.request(
        "quill/chat",
        {"message": "What does list_python_files do? One sentence.", "textDocument": {"uri": uri}, "partialResultToken": token},
    )
    deltas = server.deltas(token)
    print_numbers(editor=editor, deltas=len(deltas), reply=result["reply"][:80], usage=result["usage"])
    assert result["reply"].strip()
    assert len(deltas) > 1 and "".join(deltas) == result["reply"]
    assert result["finishReason"] in ("stop", "length")
    assert result["usage"]["completionTokens"] > 0
    # the open document went into the prompt as context
    assert result["usage"]["promptTokens"] > 60

    history = await server.request("quill/history", {})
    turns = history["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == "What does list_python_files do? One sentence."
    assert turns[1]["content"] == result["reply"] and turns[1]["finishReason"] == result["finishReason"]


@pytest.mark.parametrize("precision", ["auto"])
async def test_status_reports_model_device_dtype(server, model_path):
    status = await server.request("quill/status", {})
    print_numbers(status={k: status[k] for k in ("state", "model", "device", "dtype", "progress", "acceptance")})
    assert status["state"] == "ready"
    assert status["model"] == model_path
    assert status["device"] == "cpu" and status["dtype"] == "float32-int4"  # CPU auto: a Q4_1 GGUF
    assert status["progress"] is None
    assert status["acceptance"] == {"shown": 0, "accepted": 0}
    assert status["settings"]["maxContextLength"] == 1500


async def test_settings_change_bad_value_valid_value_and_model_reload(server, session_cache):
    # a bad value: a message naming the setting, and the default stays
    server.set_configuration({"maxContextLength": "lots"}, section="quill")
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await server.wait_until(lambda: server.messages, types.WINDOW_SHOW_MESSAGE)
    assert "quill.maxContextLength" in server.messages[-1].message
    status = await server.request("quill/status", {})
    assert status["settings"]["maxContextLength"] == 1500

    # a valid value takes effect on the next request
    server.set_configuration({"chat": {"maxTokens": 5}}, section="quill")
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    result = await server.request("quill/chat", {"message": "Tell me a long story about a dragon."})
    assert result["usage"]["completionTokens"] <= 5

    # a new model reloads, with work-done progress begin/report/end
    checkpoint = str(next(p.parent for p in session_cache.rglob("quill.json")))
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"quill": {"model": checkpoint}}))
    status = await server.wait_loaded(count=2)
    reports = server.progress_reports[server.load_token()]
    print_numbers(reload_progress=[type(r).__name__ for r in reports], model=status["model"])
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and isinstance(reports[-1], types.WorkDoneProgressEnd)
    assert any(isinstance(r, types.WorkDoneProgressReport) and r.message.startswith("load") for r in reports)
    assert status["state"] == "ready" and status["model"] == checkpoint
