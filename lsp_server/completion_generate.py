"""Stage 3 of an inline completion: greedy generation on the worker thread, stopped as early as
the suggestion allows.

A single-line position stops at the first newline in the engine already, saving the tokens after
it. With `stopEarly` (the default) the post-processing rules also watch the stream
(`stream_cut.StreamCut`), so generation ends where the suggestion does instead of at `maxTokens`.
"""

from __future__ import annotations

from lsp_server.completion_prompt import CompletionPrompt
from lsp_server.completion_window import Request
from lsp_server.model_host import Job, ModelHost
from lsp_server.stream_cut import StreamCut


def generate(host: ModelHost, job: Job, prompt: CompletionPrompt, request: Request):
    """The engine's `GenerationResult` for `prompt`, or None when the user's request was stopped."""
    from runtime.engine import GenerationConfig  # torch comes with the model, not with the server

    settings = request.settings
    gen = GenerationConfig(
        max_new_tokens=settings.max_tokens,
        temperature=0.0,
        stop_ids=prompt.stop_ids,
        stop_strings=prompt.stop_strings + (() if request.multiline else ("\n",)),
        prompt_lookup=settings.prompt_lookup,
    )
    cut = _stream_cut(request) if settings.stop_early else None
    result = host.generate(job, prompt.ids, gen, on_text=cut.push if cut else None, should_stop=cut)
    # the engine reports our own stop as "cancelled" too; only the job's flag means the user's
    if result.finish_reason == "cancelled" and (job.stop.is_set() or cut is None or not cut.done):
        return None
    return result


def _stream_cut(request: Request) -> StreamCut:
    window = request.window
    return StreamCut(
        prefix=window.prefix,
        suffix=window.suffix,
        line_prefix=window.line_prefix,
        line_suffix=window.line_suffix,
        multiline=request.settings.multiline,
    )
