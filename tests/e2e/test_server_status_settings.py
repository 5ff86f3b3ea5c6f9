"""Status on a fresh server and settings changes, over stdio on the real SmolLM2-135M-Instruct
weights (CPU): each test starts `python -m lsp_server` of its own (they change what a server
reports or loads), with VS Code's client capabilities, and waits for the model's work-done
progress to end.
"""

from __future__ import annotations

import pytest
from lsprotocol import types

from tests.e2e.conftest import print_numbers

pytestmark = pytest.mark.slow  # real weights, real server processes


@pytest.mark.parametrize("precision", ["auto"])
async def test_status_reports_model_device_dtype(server, model_path):
    status = await server.request("quill/status", {})
    print_numbers(status={k: status[k] for k in ("state", "model", "device", "dtype", "progress", "acceptance")})
    assert status["state"] == "ready"
    assert status["model"] == model_path
    assert status["device"] == "cpu" and status["dtype"] == "float32-int4"  # CPU auto: a Q4_1 GGUF
    assert status["progress"] is None
    # a fresh server has shown, generated and counted nothing yet
    assert status["acceptance"] == {"shown": 0, "accepted": 0}
    assert (status["tokensGenerated"], status["tokensShown"], status["generations"]) == (0, 0, 0)
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
