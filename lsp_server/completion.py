"""One inline completion as a pipeline (after llm-ls): window -> prompt -> generate -> postprocess.

With `stopEarly` (the default) the post-processing rules also watch the stream (`stream_cut`),
so generation ends where the suggestion does instead of at `maxTokens`.

`Request` is a snapshot taken on the event loop when the request arrives (the document may
change while the job waits); `run` executes on the model worker thread. The results are turned
into LSP items by `inline_items` / `completion_items`, each carrying the `quill.acceptCompletion`
command so the client reports accepted suggestions back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

from lsprotocol import types

from lsp_server import completion_prompt, postprocess, stream_cut
from lsp_server.model_host import Job, ModelHost
from lsp_server.protocol import ACCEPT_COMPLETION
from lsp_server.settings import CompletionSettings

_ids = itertools.count(1)


@dataclass
class Request:
    window: completion_prompt.CursorWindow
    settings: CompletionSettings
    language: str = ""


def snapshot(
    text: str, position: types.Position, settings: CompletionSettings, encoding: str, language: str = ""
) -> Request:
    """Cut the window around the cursor now, on the event loop, from the current text."""
    window = completion_prompt.cursor_window(
        text,
        position.line,
        position.character,
        max_chars=completion_prompt.window_chars(settings.context_tokens),
        encoding=encoding,
    )
    return Request(window, settings, language)


def run(host: ModelHost, job: Job, request: Request) -> Optional[str]:
    """Worker thread: the suggestion text for `request`, or None."""
    from runtime.engine import GenerationConfig

    loaded = host.loaded
    if loaded is None:
        return None
    window, settings = request.window, request.settings
    prompt = completion_prompt.build_completion_prompt(
        loaded.engine.tokenizer, loaded.fim, window, settings.context_tokens, request.language
    )
    multiline = postprocess.is_multiline_position(window.line_prefix, window.line_suffix, settings.multiline)
    # single-line suggestions stop at the newline in the engine already, saving the tokens after it
    gen = GenerationConfig(
        max_new_tokens=settings.max_tokens,
        temperature=0.0,
        stop_ids=prompt.stop_ids,
        stop_strings=prompt.stop_strings + (() if multiline else ("\n",)),
        prompt_lookup=settings.prompt_lookup,
    )
    if not prompt.ids:
        return None
    cut = _stream_cut(window, settings) if settings.stop_early else None
    result = host.generate(job, prompt.ids, gen, on_text=cut.push if cut else None, should_stop=cut)
    # the engine reports our own stop as "cancelled" too; only the job's flag means the user's
    if result.finish_reason == "cancelled" and (job.stop.is_set() or cut is None or not cut.done):
        return None
    text = postprocess.postprocess(
        completion_prompt.unheal(result.text, window.line_prefix),
        prefix=window.prefix,
        suffix=window.suffix,
        line_prefix=window.line_prefix,
        line_suffix=window.line_suffix,
        multiline=settings.multiline,
        truncated=result.finish_reason == "length",
    )
    if text is not None:
        host.tokens_shown += len(loaded.engine.tokenizer.encode(text, dummy_prefix=False))
    return text


def _stream_cut(window: completion_prompt.CursorWindow, settings: CompletionSettings) -> stream_cut.StreamCut:
    return stream_cut.StreamCut(
        prefix=window.prefix,
        suffix=window.suffix,
        line_prefix=window.line_prefix,
        line_suffix=window.line_suffix,
        multiline=settings.multiline,
    )


def _accept_command(completion_id: int) -> types.Command:
    return types.Command(title="Quill: accept suggestion", command=ACCEPT_COMPLETION, arguments=[completion_id])


def inline_items(text: Optional[str], request: Request) -> types.InlineCompletionList:
    """The textDocument/inlineCompletion result: one item, or none."""
    if text is None:
        return types.InlineCompletionList(items=[])
    at = types.Position(request.window.line, request.window.character)
    item = types.InlineCompletionItem(
        insert_text=text, range=types.Range(at, at), command=_accept_command(next(_ids))
    )
    return types.InlineCompletionList(items=[item])


def completion_items(text: Optional[str], request: Request) -> types.CompletionList:
    """The textDocument/completion fallback: the same text as one item replacing the current word."""
    if text is None:
        return types.CompletionList(is_incomplete=True, items=[])
    window = request.window
    word = completion_prompt.current_word(window.line_prefix)
    end = types.Position(window.line, window.character)
    start = types.Position(window.line, window.character - len(word.encode("utf-16-le")) // 2)
    first_line = text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=(word + first_line)[:80] or first_line[:80],
        kind=types.CompletionItemKind.Text,
        detail="Quill",
        filter_text=word + text,
        text_edit=types.TextEdit(range=types.Range(start, end), new_text=word + text),
        insert_text_format=types.InsertTextFormat.PlainText,
        sort_text="0",
        command=_accept_command(next(_ids)),
    )
    return types.CompletionList(is_incomplete=True, items=[item])
