"""One inline completion, stage by stage (after llm-ls); each stage is entered once, in this order:

    window       event loop, on arrival   completion_window.snapshot
    prompt       model worker             completion_prompt.build_completion_prompt
    generate     model worker             completion_generate.generate
    postprocess  model worker             postprocess.suggestion
    items        event loop               completion_items.inline_list / completion_list

`complete` takes a request from its arrival to its LSP result; `run` is the part that its job runs
on the model worker thread. Between the two, the scheduler decides whether and when the job runs
(a superseded or cancelled request, a chat, a model not ready: no suggestion, an empty result).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

from lsprotocol import types

from lsp_server import completion_generate, completion_prompt, completion_window, postprocess
from lsp_server.completion_window import Request
from lsp_server.model_host import Job, ModelHost
from lsp_server.settings import CompletionSettings

Work = Callable[[Job], Optional[str]]
Schedule = Callable[[str, Work], Awaitable[Optional[str]]]  # (uri, work) -> the suggestion or None
Items = Callable[[Optional[str], Optional[Request]], Any]  # the suggestion as the LSP result


async def complete(
    uri: str,
    document: Any,
    position: types.Position,
    *,
    settings: CompletionSettings,
    encoding: str,
    host: ModelHost,
    schedule: Schedule,
    items: Items,
) -> Any:
    """The LSP result for a completion at `position` in `document` (a pygls text document)."""
    request = completion_window.snapshot(
        document.source, position, settings, encoding, document.language_id or "", uri
    )
    text = await schedule(uri, lambda job: run(host, job, request))
    return items(text, request)


def run(host: ModelHost, job: Job, request: Request) -> Optional[str]:
    """Worker thread: the suggestion text for `request`, or None."""
    loaded = host.loaded
    if loaded is None:
        return None
    tokenizer = loaded.engine.tokenizer
    prompt = completion_prompt.build_completion_prompt(
        tokenizer, loaded.fim, request.window, request.settings.context_tokens, request.language
    )
    if not prompt.ids:
        return None
    result = completion_generate.generate(host, job, prompt, request)
    if result is None:
        return None
    text = postprocess.suggestion(result.text, request, truncated=result.finish_reason == "length")
    if text is not None:
        host.tokens_shown += len(tokenizer.encode(text, dummy_prefix=False))
    return text
