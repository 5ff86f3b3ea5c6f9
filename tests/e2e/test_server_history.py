"""Chat history over server lifetimes: restarts, clearing, `--disable_history`, `kill -9`."""

from __future__ import annotations

import pytest

import asyncio
import os
import signal
import sqlite3

from lsprotocol import types

from tests.e2e.conftest import PROTOCOL_PRECISION, print_numbers, quill_server

pytestmark = pytest.mark.slow  # real weights, real server processes

INIT = {"precision": PROTOCOL_PRECISION, "chat": {"maxTokens": 12}}


def init_for(model_path: str) -> dict:
    return {"model": model_path, **INIT}


async def chat(client, message: str, token: str | None = None) -> dict:
    params = {"message": message}
    if token:
        params["partialResultToken"] = token
    return await client.request("quill/chat", params)


async def test_history_survives_a_restart_and_clear_empties_it(first_use, session_cache, workspace, data_dir, model_path):
    async with quill_server(workspace, session_cache, data_dir, init=init_for(model_path)) as first:
        await first.wait_loaded()
        one = await chat(first, "My name is Ada. Remember it.")
        two = await chat(first, "What is 3 + 4?")

    async with quill_server(workspace, session_cache, data_dir, init=init_for(model_path)) as second:
        await second.wait_loaded()
        turns = (await second.request("quill/history", {}))["turns"]
        print_numbers(turns_after_restart=len(turns))
        assert [(t["role"], t["content"]) for t in turns] == [
            ("user", "My name is Ada. Remember it."), ("assistant", one["reply"]),
            ("user", "What is 3 + 4?"), ("assistant", two["reply"]),
        ]
        # the earlier exchanges go into the next prompt (clipped to maxContextLength)
        three = await chat(second, "And my name?")
        alone_params = {"message": "And my name?", "workspaceFolder": (workspace / "elsewhere").as_uri()}
        alone = await second.request("quill/chat", alone_params)
        assert three["usage"]["promptTokens"] > alone["usage"]["promptTokens"] + 20

        cleared = await second.request("quill/clearHistory", {})
        assert cleared["cleared"] == 6
        assert (await second.request("quill/history", {}))["turns"] == []
        # another folder's history is untouched by the clear
        other = await second.request("quill/history", {"workspaceFolder": (workspace / "elsewhere").as_uri()})
        assert len(other["turns"]) == 2


async def test_disable_history_records_nothing(first_use, session_cache, workspace, data_dir, model_path):
    async with quill_server(workspace, session_cache, data_dir, init=init_for(model_path), flags=("--disable_history",)) as client:
        await client.wait_loaded()
        await chat(client, "Hello there.")
        assert (await client.request("quill/history", {}))["turns"] == []
    assert not (data_dir / "history").exists() or not any((data_dir / "history").iterdir())


async def test_sigkill_during_a_streamed_reply_keeps_every_completed_turn(
    first_use, session_cache, workspace, data_dir, model_path
):
    init = {"model": model_path, "precision": PROTOCOL_PRECISION, "chat": {"maxTokens": 8}}
    async with quill_server(workspace, session_cache, data_dir, init=init, shutdown=False) as doomed:
        await doomed.wait_loaded()
        done = await chat(doomed, "Say hello.")
        doomed.set_configuration({"chat": {"maxTokens": 300}}, section="quill")
        doomed.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        pending_task = asyncio.ensure_future(doomed.protocol.send_request_async(
            "quill/chat", {"message": "Count from 1 to 200 slowly.", "partialResultToken": "doomed"}
        ))
        await doomed.wait_until(lambda: len(doomed.deltas("doomed")) >= 3)
        os.kill(doomed._server.pid, signal.SIGKILL)
        await doomed._server.wait()
        pending_task.cancel()
        print_numbers(deltas_before_kill=len(doomed.deltas("doomed")), exit_code=doomed._server.returncode)

    databases = list((data_dir / "history").glob("*.sqlite3"))
    assert len(databases) == 1
    with sqlite3.connect(databases[0]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    async with quill_server(workspace, session_cache, data_dir, init=init_for(model_path)) as revived:
        await revived.wait_loaded()
        turns = (await revived.request("quill/history", {}))["turns"]
        assert [(t["role"], t["content"]) for t in turns] == [("user", "Say hello."), ("assistant", done["reply"])]
        # and it keeps working: a new turn is appended after the old ones
        await chat(revived, "Again?")
        assert len((await revived.request("quill/history", {}))["turns"]) == 4


async def test_two_servers_on_one_workspace_keep_each_others_turns(first_use, session_cache, workspace, data_dir, model_path):
    init = {"model": model_path, "precision": PROTOCOL_PRECISION, "chat": {"maxTokens": 4}}
    async with quill_server(workspace, session_cache, data_dir, init=init) as a, \
            quill_server(workspace, session_cache, data_dir, init=init) as b:
        await asyncio.gather(a.wait_loaded(), b.wait_loaded())
        # both write while the other is open (and, here, at the same time)
        await asyncio.gather(chat(a, "From A, one."), chat(b, "From B, one."))
        await asyncio.gather(chat(a, "From A, two."), chat(b, "From B, two."))
        seen_by_a = (await a.request("quill/history", {}))["turns"]
        seen_by_b = (await b.request("quill/history", {}))["turns"]
    users = sorted(t["content"] for t in seen_by_a if t["role"] == "user")
    print_numbers(turns=len(seen_by_a))
    assert users == ["From A, one.", "From A, two.", "From B, one.", "From B, two."]
    assert seen_by_a == seen_by_b and len(seen_by_a) == 8
