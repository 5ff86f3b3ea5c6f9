"""An inline completion sent while the model loads is answered once it is ready (issue #19).

The real server starts on an EMPTY model cache, so it converts the SmolLM2 GGUF from the test
assets before it can load it; the requests below are all sent while that runs, as an editor does
when the user opens a file and enters insert mode at once. Checked, over stdio: a cancelled
waiting request is answered `RequestCancelled` and one superseded by a newer request for its
document is answered empty, both while the model is still loading; the newest request waits and
gets a real suggestion once the load's work-done progress has ended; the counters agree. Then a
settings change reloads the model, and a request sent right behind it is answered once the new
model has loaded.
"""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.e2e.conftest import inline_params, open_document, print_numbers, quill_server

pytestmark = pytest.mark.slow  # a real conversion and load of the SmolLM2 weights

SOURCE = "import os\n\n\ndef list_python_files(folder):\n    "
CURSOR = (4, 4)
LOAD_S = 900  # a first conversion and load on a shared two-core machine


def load_ended(client) -> int:
    """How many model loads have ended (work-done progress `end`) so far."""
    return sum(1 for values in client.progress_reports.values() if values and isinstance(values[-1], types.WorkDoneProgressEnd))


async def test_a_request_sent_while_the_model_loads_gets_a_suggestion_once_it_is_ready(
    tmp_path, workspace, data_dir, model_path
):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    # float32: no compile of the decode step, so the test waits for the conversion and the load
    # only; the bound is raised so that a slow machine cannot turn a late answer into an empty one.
    init = {"model": model_path, "precision": "float32",
            "completion": {"maxTokens": 24, "waitForModelSeconds": LOAD_S}}
    async with quill_server(workspace, cache, data_dir, init=init) as client:
        uri = open_document(client, workspace / "files.py", SOURCE)
        params = inline_params(uri, *CURSOR)
        send = client.protocol.send_request_async

        # A request cancelled while it waits is answered RequestCancelled at once.
        doomed = asyncio.ensure_future(send(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="doomed"))
        first = await client.request("quill/status", {})
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="doomed"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(doomed, 60)

        # Of two requests for the document, the older is answered empty at once, the newer waits.
        older = asyncio.ensure_future(send(types.TEXT_DOCUMENT_INLINE_COMPLETION, params))
        newer = asyncio.ensure_future(send(types.TEXT_DOCUMENT_INLINE_COMPLETION, params))
        superseded = await asyncio.wait_for(older, 60)
        loading = await client.request("quill/status", {})
        assert not newer.done() and not load_ended(client)

        result = await asyncio.wait_for(newer, LOAD_S)
        ended_first = load_ended(client) == 1  # the load's progress `end` came before this answer
        after = await client.request("quill/status", {})

        # A settings change reloads the model (here: the folder the first load converted into);
        # a request sent right behind it waits for the new model, not running on the old one.
        converted = str(next(path.parent for path in cache.rglob("quill.json")))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"quill": {"model": converted}}))
        reloaded = await asyncio.wait_for(client.text_document_inline_completion_async(params), LOAD_S)
        ended_second = load_ended(client) == 2
        final = await client.request("quill/status", {})

    counters = after["completions"]
    print_numbers(states=[first["state"], loading["state"], after["state"]], counters=counters,
                  suggestion=result.items[0].insert_text if result.items else None)
    assert first["state"] in ("starting", "loading") and loading["state"] == "loading"
    assert len(superseded.items) == 0
    assert ended_first and after["state"] == "ready"
    assert len(result.items) == 1 and result.items[0].insert_text.strip()
    assert counters["requested"] == 3 and counters["cancelled"] == 1 and counters["superseded"] == 1
    assert counters["generated"] == 1 and counters["notReady"] == 0

    print_numbers(reloaded=reloaded.items[0].insert_text if reloaded.items else None, model=final["model"])
    assert ended_second and final["model"] == converted and final["state"] == "ready"
    assert len(reloaded.items) == 1 and reloaded.items[0].insert_text.strip()
    assert final["completions"]["generated"] == 2 and final["completions"]["notReady"] == 0
