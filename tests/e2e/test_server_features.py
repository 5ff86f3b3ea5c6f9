"""The language server's features over stdio, on the real SmolLM2-135M-Instruct weights (CPU).

One `python -m lsp_server` per editor (client capabilities recorded from VS Code and from
Neovim) serves every test of this module: it starts once, waits for the model's work-done
progress to end, and each test checks what the protocol promises (DESIGN.md) on a document of
its own: inline completion and its acceptance, the completion fallback, a mid-line suggestion, a
streamed chat. Counters and history are compared before and after each test's own requests, so
no test depends on which ran before it. Status on a fresh server and settings changes, which
need a server of their own, are in test_server_status_settings.py.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from lsprotocol import types

from tests.e2e.conftest import CLIENTS, PROTOCOL_PRECISION, inline_params, open_document, print_numbers, quill_server

pytestmark = pytest.mark.slow  # real weights, real server processes
# The async tests run on the module's event loop, the one its servers' clients live on.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

SOURCE = """import os


def list_python_files(folder):
    
"""
CURSOR = (4, 4)  # the indented, empty body line of list_python_files()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CLIENTS)
async def server(request, first_use, session_cache, model_path, tmp_path_factory):
    """A ready server for this module's tests, with VS Code's or Neovim's capabilities (the
    model loaded from the session cache that `first_use` filled)."""
    root = tmp_path_factory.mktemp(f"features-{request.param}")
    workspace = root / "project"
    workspace.mkdir()
    init = {"model": model_path, "precision": PROTOCOL_PRECISION, "completion": {"maxTokens": 24}, "chat": {"maxTokens": 24}}
    async with quill_server(workspace, session_cache, root / "data", init=init, capabilities=request.param) as client:
        await client.wait_loaded()
        client.editor = request.param
        yield client


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


@in_module_loop
async def test_inline_completion_and_acceptance(server):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    before = await server.request("quill/status", {})
    result = await server.text_document_inline_completion_async(inline_params(uri, *CURSOR))
    assert len(result.items) == 1
    item = result.items[0]
    print_numbers(editor=server.editor, suggestion=item.insert_text)
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

    def added(*keys):
        def value(s):
            for key in keys:
                s = s[key]
            return s
        return value(status) - value(before)

    assert (added("acceptance", "shown"), added("acceptance", "accepted")) == (1, 1)
    assert added("completions", "generated") == 1 and added("generations") == 1
    # token accounting: what the model generated for this request and what the suggestion shows
    print_numbers(tokens_generated=added("tokensGenerated"), tokens_shown=added("tokensShown"))
    assert added("tokensGenerated") == status["lastGeneration"]["tokens"] > 0
    assert added("tokensShown") > 0


@in_module_loop
async def test_completion_fallback_gives_the_same_text(server):
    uri = open_document(server, server.workspace / "fallback.py", SOURCE)
    inline = await server.text_document_inline_completion_async(inline_params(uri, *CURSOR))
    completion = await server.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri), position=types.Position(*CURSOR))
    )
    assert len(completion.items) == 1
    item = completion.items[0]
    print_numbers(editor=server.editor, label=item.label)
    assert item.text_edit.new_text == inline.items[0].insert_text  # no word before the cursor here
    assert item.command.command == "quill.acceptCompletion"
    # greedy decoding and the engine's prefix cache: the second request reused the prompt
    status = await server.request("quill/status", {})
    assert status["lastGeneration"]["reusedTokens"] > 0


@in_module_loop
async def test_mid_line_completion_is_single_line(server):
    text = "def area(width, height):\n    return width * height\n\n\nprint(area(3, ))\n"
    uri = open_document(server, server.workspace / "area.py", text)
    result = await server.text_document_inline_completion_async(inline_params(uri, 4, 14))
    print_numbers(items=[i.insert_text for i in result.items])
    assert len(result.items) == 1
    suggestion = result.items[0].insert_text
    assert "\n" not in suggestion and suggestion.strip()
    assert not suggestion.endswith("))"), "the closers already after the cursor were repeated"


@in_module_loop
async def test_chat_streams_deltas_that_add_up_to_the_reply(server):
    uri = open_document(server, server.workspace / "chat.py", SOURCE)
    token = "chat-1"
    earlier = (await server.request("quill/history", {}))["turns"]
    result = await server.request(
        "quill/chat",
        {"message": "What does list_python_files do? One sentence.", "textDocument": {"uri": uri}, "partialResultToken": token},
    )
    deltas = server.deltas(token)
    print_numbers(editor=server.editor, deltas=len(deltas), reply=result["reply"][:80], usage=result["usage"])
    assert result["reply"].strip()
    assert len(deltas) > 1 and "".join(deltas) == result["reply"]
    assert result["finishReason"] in ("stop", "length")
    assert result["usage"]["completionTokens"] > 0
    # the open document went into the prompt as context
    assert result["usage"]["promptTokens"] > 60

    history = await server.request("quill/history", {})
    # this chat added exactly its two turns (the completions of other tests recorded nothing)
    assert history["turns"][: len(earlier)] == earlier
    turns = history["turns"][len(earlier):]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == "What does list_python_files do? One sentence."
    assert turns[1]["content"] == result["reply"] and turns[1]["finishReason"] == result["finishReason"]
