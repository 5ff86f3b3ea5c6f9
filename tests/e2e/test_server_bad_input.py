"""Bad input gets a proper JSON-RPC error or a sane empty result, and the server keeps serving.

One test sends everything in a row (malformed JSON, a JSON value that is no message, unknown
methods, wrong param types, positions past the end, an unknown URI, a 5 MB document, a 100 KB
chat message), then checks that a normal completion and a normal status request still work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcMethodNotFound

from tests.e2e.conftest import inline_params, open_document, print_numbers

pytestmark = pytest.mark.slow  # real weights, real server processes

SOURCE = "import os\n\n\ndef list_python_files(folder):\n    \n"


def send_raw(client, body: bytes) -> None:
    """Write bytes to the server's stdin as one LSP frame, bypassing the client's serializer."""
    client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def raw_request(client, msg_id: int, method: str, params) -> object:
    """A request with hand-written params; the response is routed back by id."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    client.protocol._request_futures[msg_id] = future
    send_raw(client, json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode())
    return await asyncio.wrap_future(future)


async def test_bad_input_then_a_normal_request(server):
    # 1. malformed JSON: answered with ParseError (id null), noted in the log
    send_raw(server, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    await server.wait_until(lambda: any("ParseError" in m.message for m in server.log_messages), types.WINDOW_LOG_MESSAGE)
    # ... and a JSON value that is not a message at all
    send_raw(server, b"[1, 2, 3]")

    # 2. unknown methods
    with pytest.raises(JsonRpcMethodNotFound):
        await server.request("quill/doesNotExist", {})
    with pytest.raises(JsonRpcMethodNotFound):
        await server.request("textDocument/teleport", {})

    # 3. wrong param types: LSP methods and quill/ methods alike
    with pytest.raises(JsonRpcInvalidParams):
        await raw_request(server, 9001, "textDocument/inlineCompletion",
                          {"textDocument": {"uri": 5}, "position": "the end", "context": {"triggerKind": 1}})
    with pytest.raises(JsonRpcInvalidParams) as bad_chat:
        await server.request("quill/chat", {"message": 42})
    assert "message" in str(bad_chat.value)
    with pytest.raises(JsonRpcInvalidParams):
        await server.request("quill/chat", {"message": "hi", "range": {"start": "x"}})
    with pytest.raises(JsonRpcInvalidParams):
        await server.request("quill/history", {"workspaceFolder": ["not", "a", "string"]})

    # 4. positions past the end: clamped to the document's end, never an error
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    past = await server.text_document_inline_completion_async(inline_params(uri, 999, 999))
    for item in past.items:
        assert item.range.start.line <= SOURCE.count("\n")

    # 5. a URI that was never opened: an empty result
    unknown = await server.text_document_inline_completion_async(inline_params("file:///nowhere/ghost.py", 0, 0))
    assert len(unknown.items) == 0

    # 6. a 5 MB document: the window around the cursor is cut before tokenizing
    big = "x = 1\n" * (5 * 1024 * 1024 // 6) + SOURCE
    big_uri = open_document(server, server.workspace / "big.py", big)
    line = big.count("\n") - 1
    huge = await server.text_document_inline_completion_async(inline_params(big_uri, line, 4))
    status = await server.request("quill/status", {})
    print_numbers(big_document_mb=round(len(big) / 2**20, 1), big_prompt_tokens=status["lastGeneration"]["promptTokens"],
                  items=len(huge.items))
    assert status["lastGeneration"]["promptTokens"] <= 1024 + 16

    # 7. a 100 KB chat message: clipped to maxContextLength, answered normally
    message = ("Please review this. " * 5200)[: 100 * 1024] + "What is 2 + 2?"
    reply = await server.request("quill/chat", {"message": message})
    print_numbers(chat_message_kb=len(message) // 1024, prompt_tokens=reply["usage"]["promptTokens"])
    assert reply["finishReason"] in ("stop", "length")
    assert reply["usage"]["promptTokens"] <= 1500

    # the server is still serving normally
    normal = await server.text_document_inline_completion_async(inline_params(uri, 4, 4))
    assert len(normal.items) == 1
    status = await server.request("quill/status", {})
    assert status["state"] == "ready"
