"""Stage 2 of a chat turn: the prompt sent to the model for one `quill/chat` request.

A turn is: a short system message, the workspace's earlier exchanges (from `history.py`), and
the user's message with editor context (`chat_context`) in front of it. Budgets are in tokens:
the document context gets at most a third of `max_context_length` (the start of the document
stands in for what the editor shows) and the message itself is clipped (its end kept) so that
the system message, the context and the message always fit; the history is then clipped oldest
pair first by `runtime.prompts.build_chat_prompt`, as the sample did.
"""

from __future__ import annotations

from typing import Optional

from lsp_server.chat_context import EditorContext
from runtime.prompts import build_chat_prompt

SYSTEM_PROMPT = (
    "You are Quill, a coding assistant running locally inside the user's editor. "
    "Answer clearly and concisely; use fenced code blocks for code."
)
CONTEXT_SHARE = 1 / 3
RESERVED_TOKENS = 64  # chat template overhead (role markers, generation prompt)


def build(
    tokenizer, chat_format, message: str, context: Optional[EditorContext], earlier: list[dict], budget: int
) -> list[int]:
    """The prompt's token ids: at most `budget` of them, the earlier exchanges clipped first."""
    user_text = user_message(tokenizer, message, context, budget)
    return build_chat_prompt(tokenizer, chat_format, chat_messages(earlier, user_text), budget)


def clip_tokens(tokenizer, text: str, budget: int, *, keep: str) -> str:
    """`text` cut to at most `budget` tokens, keeping its "head" or its "tail"."""
    if budget <= 0:
        return ""
    # cut in characters first so a huge text is never tokenized whole
    window = budget * 8
    text = text[:window] if keep == "head" else text[-window:]
    ids = tokenizer.encode(text)
    if len(ids) <= budget:
        return text
    return tokenizer.decode(ids[:budget] if keep == "head" else ids[-budget:])


def user_message(tokenizer, message: str, context: Optional[EditorContext], max_context_length: int) -> str:
    """The user's message with the editor context in front, clipped to fit the budget."""
    budget = max_context_length - RESERVED_TOKENS - len(tokenizer.encode(SYSTEM_PROMPT))
    parts = []
    if context is not None and context.text.strip():
        context_budget = int(max_context_length * CONTEXT_SHARE)
        snippet = clip_tokens(tokenizer, context.text, context_budget, keep="head")
        what = "Selected code" if context.selected else "The open file"
        parts.append(f"{what} ({context.name}):\n```{context.language}\n{snippet}\n```\n")
        budget -= len(tokenizer.encode(parts[0]))
    parts.append(clip_tokens(tokenizer, message, max(budget, 16), keep="tail"))
    return "\n".join(parts)


def chat_messages(history: list[dict], user_text: str) -> list[dict]:
    """System message, earlier exchanges (oldest first), then the new user message."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": user_text}]
