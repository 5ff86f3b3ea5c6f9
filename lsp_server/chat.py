"""One `quill/chat` turn, stage by stage; each stage is entered once, in this order:

    context   event loop, on arrival   chat_context.editor_context
    prompt    model worker             chat_prompt.build
    generate  model worker             ModelHost.generate, streaming `{delta}`s through `send`
    history   model worker             HistoryStore.append_turn (when history is on)

`reply` takes a turn from its arrival to its result; `run` is the part that its job runs on the
model worker thread, the chat counterpart of `completion.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from lsp_server import chat_context, chat_prompt
from lsp_server.chat_context import EditorContext
from lsp_server.history import HistoryStore
from lsp_server.model_host import Job, ModelHost
from lsp_server.protocol import ChatParams, ChatResult, Usage
from lsp_server.settings import Settings
from runtime.errors import QuillError

Schedule = Callable[[Callable[[Job], ChatResult]], Awaitable[ChatResult]]


@dataclass
class Turn:
    """One chat turn as it arrived."""

    message: str
    context: Optional[EditorContext]
    store: Optional[HistoryStore]  # None: history is off
    settings: Settings
    send: Optional[Callable[[str], None]]  # streams a delta to the client (thread-safe)


async def reply(
    params: ChatParams,
    document: Any,
    *,
    store: Optional[HistoryStore],
    settings: Settings,
    send: Optional[Callable[[str], None]],
    host: ModelHost,
    schedule: Schedule,
) -> ChatResult:
    """The answer to `params`; `document` is the pygls text document it names (None: none open)."""
    turn = Turn(params.message, chat_context.editor_context(document, params.range), store, settings, send)
    return await schedule(lambda job: run(host, job, turn))


def run(host: ModelHost, job: Job, turn: Turn) -> ChatResult:
    """Worker thread: the prompt, the streamed generation, and the turn kept in the history."""
    loaded = host.loaded
    if loaded is None:
        raise QuillError(f"No model is loaded: {host.error or 'loading did not finish'}.")
    from runtime.engine import GenerationConfig  # torch comes with the model, not with the server

    tokenizer, s = loaded.engine.tokenizer, turn.settings
    budget = min(s.max_context_length, loaded.engine.max_seq_length - s.chat.max_tokens - 1)
    earlier = turn.store.prompt_messages() if turn.store else []
    ids = chat_prompt.build(tokenizer, loaded.chat_format, turn.message, turn.context, earlier, budget)
    gen = GenerationConfig(
        max_new_tokens=s.chat.max_tokens,
        temperature=s.chat.temperature,
        top_k=s.chat.top_k,
        stop_ids=frozenset(tokenizer.stop_ids),
        # Built-in formats without an end-of-turn token (Phi-2) end on a string instead.
        stop_strings=loaded.chat_format.stop_strings,
    )
    result = host.generate(job, ids, gen, on_text=turn.send)
    if turn.store is not None:
        turn.store.append_turn(turn.message, result.text, result.finish_reason)
    usage = Usage(prompt_tokens=result.prompt_tokens, completion_tokens=len(result.token_ids))
    return ChatResult(reply=result.text, finish_reason=result.finish_reason, usage=usage)
