"""Stage 2 of an inline completion: the prompt, in tokens, on the worker thread.

The window cut at arrival (`completion_window`) is cut again in tokens: about three quarters of
`contextTokens` for the prefix, the rest for the suffix. Models with fill-in-the-middle tokens
(`runtime.prompts.detect_fim`) get a FIM prompt; others continue the prefix, as llm-ls and Tabby
do.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_server.completion_window import CursorWindow

PREFIX_SHARE = 0.75
FENCE = "```"


@dataclass
class CompletionPrompt:
    ids: list[int]
    stop_ids: frozenset
    fim: bool
    prefix_tokens: int
    suffix_tokens: int
    stop_strings: tuple = ()


def build_completion_prompt(
    tokenizer, fim, window: CursorWindow, context_tokens: int, language: str = ""
) -> CompletionPrompt:
    """Token ids for the model: FIM when `fim` is a FimFormat, prefix continuation otherwise.

    Prefix continuation starts the prompt with a Markdown code fence (and stops at the closing
    one): small instruction-tuned models such as SmolLM2-Instruct saw most of their code inside
    fences, and without one they tend to answer in prose after the first line.
    """
    prefix_budget = int(context_tokens * PREFIX_SHARE) if fim else context_tokens
    suffix_budget = context_tokens - prefix_budget
    prefix_ids = tokenizer.encode(window.prefix)[-prefix_budget:] if window.prefix else []
    stop_ids = frozenset(tokenizer.stop_ids)
    if fim is not None:
        suffix_ids = fim.encode_suffix(tokenizer, window.suffix)[:suffix_budget] if window.suffix else []
        ids = fim.build(prefix_ids, suffix_ids)
        stop_ids |= frozenset(fim.stop_ids)
        return CompletionPrompt(ids, stop_ids, True, len(prefix_ids), len(suffix_ids))
    bos: list[int] = [tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else []
    fence = tokenizer.encode(f"{FENCE}{language}\n")
    return CompletionPrompt(bos + fence + prefix_ids, stop_ids, False, len(prefix_ids), 0, (FENCE,))
