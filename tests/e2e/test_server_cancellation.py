"""Superseding and cancellation: every request gets one response, and stale work is not done."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.e2e.conftest import inline_params, open_document, print_numbers

pytestmark = pytest.mark.slow  # real weights, real server processes

SOURCE = "import os\n\n\ndef list_python_files(folder):\n    "


async def test_fifty_rapid_completions_get_fifty_answers_and_only_the_last_works(server):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    params = inline_params(uri, 4, 4)
    before = await server.request("quill/status", {})
    # sent back to back, as a fast typist's editor would: none awaits the previous one
    tasks = [
        asyncio.ensure_future(server.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params))
        for _ in range(50)
    ]
    results = await asyncio.gather(*tasks)
    after = await server.request("quill/status", {})
    counters = {k: after["completions"][k] - before["completions"][k] for k in after["completions"]}
    print_numbers(responses=len(results), non_empty=sum(bool(r.items) for r in results), counters=counters,
                  generations=after["generations"] - before["generations"])
    assert len(results) == 50
    assert all(len(r.items) == 0 for r in results[:49])
    assert len(results[49].items) == 1
    assert counters["requested"] == 50
    assert counters["superseded"] == 49
    # the model ran to its end once, for the last request; a superseded request that had
    # already reached the model (possible only if the burst outlasts the debounce) stopped
    # between tokens instead of finishing
    assert counters["generated"] == 1
    assert counters["stoppedTokens"] <= 2 * (after["generations"] - before["generations"] - 1)


async def test_cancelled_chat_stops_within_a_few_tokens_and_is_recorded_as_cancelled(server):
    server.set_configuration({"chat": {"maxTokens": 400}}, section="quill")
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    message = "Count from 1 to 300, one number per line, and do not stop early."
    params = {"message": message, "partialResultToken": "count"}
    request = asyncio.ensure_future(server.protocol.send_request_async("quill/chat", params, msg_id="chat-to-cancel"))
    await server.wait_until(lambda: len(server.deltas("count")) >= 5)
    seen_at_cancel = len(server.deltas("count"))
    server.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="chat-to-cancel"))
    with pytest.raises(JsonRpcRequestCancelled):
        await request

    status = await server.request("quill/status", {})
    history = await server.request("quill/history", {})
    generated = status["lastGeneration"]["tokens"]
    print_numbers(deltas_at_cancel=seen_at_cancel, tokens_generated=generated, max_tokens=400,
                  finish=status["lastGeneration"]["finishReason"])
    assert status["lastGeneration"]["finishReason"] == "cancelled"
    assert generated - seen_at_cancel <= 10, "generation went on long after the cancel"
    turns = history["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == message
    assert turns[1]["finishReason"] == "cancelled"
    assert turns[1]["content"] == "".join(server.deltas("count"))

    # the model is free again: the next chat runs and completes
    server.set_configuration({"chat": {"maxTokens": 8}}, section="quill")
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    result = await server.request("quill/chat", {"message": "Say hi."})
    assert result["finishReason"] in ("stop", "length")


async def test_completions_during_a_chat_are_answered_empty_at_once(server):
    """Policy: answer-empty. A completion never waits for the chat that holds the model."""
    server.set_configuration({"chat": {"maxTokens": 60}}, section="quill")
    server.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    chat = asyncio.ensure_future(
        server.request("quill/chat", {"message": "Write a long poem about the sea.", "partialResultToken": "poem"})
    )
    await server.wait_until(lambda: len(server.deltas("poem")) >= 2)
    completion = await server.text_document_inline_completion_async(inline_params(uri, 4, 4))
    streamed_before_answer = len(server.deltas("poem"))
    result = await chat
    status = await server.request("quill/status", {})
    print_numbers(deltas_when_completion_answered=streamed_before_answer, chat_tokens=result["usage"]["completionTokens"],
                  busy=status["completions"]["busy"])
    assert len(completion.items) == 0
    assert status["completions"]["busy"] == 1
    # the completion was answered while the chat was still streaming, not after it
    assert streamed_before_answer < result["usage"]["completionTokens"]


async def test_cancelled_completion_answers_request_cancelled_and_the_next_one_works(server):
    uri = open_document(server, server.workspace / "files.py", SOURCE)
    params = inline_params(uri, 4, 4)
    # send_request writes the message now, so the cancel below follows it on the wire
    request = server.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="completion-1")
    server.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="completion-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wrap_future(request)
    status = await server.request("quill/status", {})
    print_numbers(completions=status["completions"])
    assert status["completions"]["cancelled"] == 1 and status["completions"]["generated"] == 0
    after = await server.text_document_inline_completion_async(params)
    assert len(after.items) == 1
