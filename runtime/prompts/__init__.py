"""Prompt formats: chat (the model's sandboxed chat template, or a built-in one) and FIM.

    fmt = ChatFormat.from_model_dir(checkpoint_dir, tokenizer)
    ids = build_chat_prompt(tokenizer, fmt, messages, max_tokens=1500)
    fim = detect_fim(tokenizer)       # None: continue the prefix instead
"""

from runtime.prompts.chat import ChatFormat, build_chat_prompt, encode_chat
from runtime.prompts.fim import FimFormat, detect_fim

__all__ = ["ChatFormat", "FimFormat", "build_chat_prompt", "detect_fim", "encode_chat"]
