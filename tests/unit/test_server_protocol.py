"""The one camelCase converter between wire JSON and the quill/ dataclasses."""

import pytest

from lsp_server.protocol import (ChatParams, ChatResult, HistoryParams, StatusResult, Acceptance, Usage, WireError,
                                 camel, from_wire, snake, to_wire)


def test_names_round_trip():
    assert camel("partial_result_token") == "partialResultToken"
    assert snake("partialResultToken") == "partial_result_token"
    assert camel("model") == "model"


def test_chat_params_from_wire_with_nested_types():
    params = from_wire(ChatParams, {
        "message": "why?", "textDocument": {"uri": "file:///a.py"}, "partialResultToken": 7,
        "range": {"start": {"line": 1, "character": 0}, "end": {"line": 3, "character": 2}},
        "unknownExtra": True,  # clients may send more than we read
    })
    assert params.message == "why?" and params.text_document.uri == "file:///a.py"
    assert params.range.end.character == 2 and params.partial_result_token == 7
    assert params.workspace_folder is None


@pytest.mark.parametrize("bad, field", [
    ({}, "params.message is required"),
    ({"message": 1}, "params.message must be str"),
    ({"message": "x", "range": {"start": {"line": 0, "character": 0}}}, "params.range"),
    ({"message": "x", "textDocument": "file:///a.py"}, "params.textDocument"),
    ({"message": "x", "partialResultToken": 1.5}, "params.partialResultToken"),
    ({"message": "x", "range": {"start": {"line": True, "character": 0}, "end": {"line": 0, "character": 0}}}, "params.range"),
])
def test_bad_params_name_the_field(bad, field):
    with pytest.raises(WireError) as err:
        from_wire(ChatParams, bad)
    assert field in str(err.value)


def test_params_may_be_absent_or_not_an_object():
    assert from_wire(HistoryParams, None).workspace_folder is None
    with pytest.raises(WireError):
        from_wire(HistoryParams, [1, 2])


def test_results_to_wire_are_camel_case():
    result = to_wire(ChatResult(reply="hi", finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=1)))
    assert result == {"reply": "hi", "finishReason": "stop", "usage": {"promptTokens": 3, "completionTokens": 1}}
    status = to_wire(StatusResult("ready", "smollm2", "cpu", "float32", None, Acceptance(2, 1)))
    assert {"state", "model", "device", "dtype", "progress", "acceptance"} <= status.keys()
    assert status["acceptance"] == {"shown": 2, "accepted": 1}
