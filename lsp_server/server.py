"""Quill's language server: a table of contents of the features it offers.

Each handler adapts LSP params to a pure module and back (pygls examples, jedi-language-server):
settings come from `settings.py`, completions from `completion.py` (which runs one file per stage
and ends in `completion_items.py`), chat turns from `chat.py`, history from `history.py`; model
work goes through `ModelHost` (one worker thread) under the rules of `scheduler.py`. The state behind the handlers, and the one place where a `QuillError`
becomes a JSON-RPC error (`user_error`), is `session.py`; protocol plumbing (untyped `quill/`
params, parse errors, badly typed requests answered instead of dropped) is `transport.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server import completion_items, protocol
from lsp_server.protocol import from_wire, to_wire
from lsp_server.session import QuillServer, user_error

server = QuillServer()


@server.feature(types.INITIALIZE)
def initialize(ls: QuillServer, params: types.InitializeParams) -> None:
    """Read `initializationOptions`; the model is loaded once the client says `initialized`."""
    ls.apply_initialization_options(params.initialization_options)


@server.feature(types.INITIALIZED)
async def initialized(ls: QuillServer, params: types.InitializedParams) -> None:
    """Fetch the `quill` configuration section, then start loading the model in the background."""
    await ls.refresh_configuration(None)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: QuillServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply changed settings; a changed model reloads with progress."""
    await ls.refresh_configuration(params.settings)


@server.feature(
    types.TEXT_DOCUMENT_INLINE_COMPLETION,
    types.InlineCompletionOptions(),  # without options pygls does not advertise the provider
)
async def inline_completion(ls: QuillServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    """Suggest text at the cursor (LSP 3.18)."""
    return await ls.complete(params.text_document.uri, params.position, completion_items.inline_list)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
async def completion_fallback(ls: QuillServer, params: types.CompletionParams) -> types.CompletionList:
    """The same suggestion as a completion item, for clients without inline completion."""
    if ls.client_has_inline_completion():
        return types.CompletionList(is_incomplete=False, items=[])
    return await ls.complete(params.text_document.uri, params.position, completion_items.completion_list)


@server.command(protocol.ACCEPT_COMPLETION)
def accept_completion(ls: QuillServer, *args: Any) -> None:
    """Count an accepted suggestion (the client runs the item's command on accept)."""
    ls.acceptance.accepted += 1


@server.feature(protocol.CHAT)
async def quill_chat(ls: QuillServer, params: Any) -> dict:
    """Answer a chat message, streaming `{delta}` through `$/progress` on the partial result token."""
    chat_params = _parse(protocol.ChatParams, params)
    if not chat_params.message.strip():
        raise JsonRpcInvalidParams("params.message is empty: type a question to ask.")
    with user_error():
        result = await ls.chat(chat_params)
    return to_wire(result)


@server.feature(protocol.HISTORY)
async def quill_history(ls: QuillServer, params: Any) -> dict:
    """The chat turns kept for a workspace folder, oldest first."""
    folder = _parse(protocol.HistoryParams, params).workspace_folder
    store = ls.history_store(ls.folder_for(folder, None))
    turns = await asyncio.to_thread(store.turns) if store else []
    return to_wire(protocol.HistoryResult(turns=turns))


@server.feature(protocol.CLEAR_HISTORY)
async def quill_clear_history(ls: QuillServer, params: Any) -> dict:
    """Forget the chat turns of a workspace folder."""
    folder = _parse(protocol.HistoryParams, params).workspace_folder
    store = ls.history_store(ls.folder_for(folder, None))
    cleared = await asyncio.to_thread(store.clear) if store else 0
    return to_wire(protocol.ClearHistoryResult(cleared=cleared))


@server.feature(protocol.STATUS)
def quill_status(ls: QuillServer, params: Any) -> dict:
    """Model state, load progress, accepted suggestions and scheduling counters."""
    return to_wire(ls.status())


def _parse(cls: type, params: Any) -> Any:
    try:
        return from_wire(cls, params)
    except protocol.WireError as exc:
        raise JsonRpcInvalidParams(str(exc)) from None

