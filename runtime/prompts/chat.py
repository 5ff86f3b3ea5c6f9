"""Chat prompts: the model's chat format, and token ids for a conversation that fit a budget.

`ChatFormat.from_model_dir` finds the model's `chat_template` (`tokenizer_config.json`,
`chat_template.jinja` or `chat_template.json`) or falls back to the built-in Phi-2 format
(`Instruct: ...\\nOutput:`) for models without one.

`build_chat_prompt` renders with `add_generation_prompt=True` and encodes so that message text can
never produce a special token. Before rendering, every character of message content that could
begin or end a special token (`<`, `>`, `[`, `]`, `▁` for the supported families) is swapped for a
private-use placeholder. In the rendered text, specials can then only be matched in what the
template itself wrote; the placeholders turn back into their characters inside plain-text runs.
The text between two specials is encoded as one run, so the ids equal those of encoding the
rendered prompt with specials (what `apply_chat_template(tokenize=True)` does) whenever the
content holds no special-token strings.

History is clipped as the DirectML sample did: the oldest user/assistant pair goes first; the
system message and the last user message stay. If those alone are too long, the last user message
loses text from its start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from runtime.errors import PromptTemplateError
from runtime.prompts.chat_template import render_template
from runtime.tokenizer.base import Tokenizer
from runtime.tokenizer.export import gguf_tokenizer_config
from runtime.tokenizer.hf_files import read_config, read_json, token_text

PHI2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}Instruct: {{ message['content'] }}\n"
    "{% else %}Output: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Output:{% endif %}"
)
PLACEHOLDER_BASE = 0x100000  # Supplementary Private Use Area-B


@dataclass(frozen=True)
class ChatFormat:
    template: str
    context: dict[str, str] = field(default_factory=dict)  # bos_token, eos_token, ... for the template
    builtin: bool = False
    stop_strings: tuple[str, ...] = ()

    @classmethod
    def from_model_dir(cls, model_dir: Path | str, tokenizer: Tokenizer | None = None) -> ChatFormat:
        model_dir = Path(model_dir)
        config = read_config(model_dir) if model_dir.is_dir() else {}
        gguf = _single_gguf(model_dir) if "chat_template" not in config else None
        if gguf is not None:  # a GGUF used as it is carries its template in the metadata
            config = {**gguf_tokenizer_config(gguf), **config}
        fields = ("bos_token", "eos_token", "unk_token", "pad_token")
        context = {k: t for k in fields if (t := token_text(config.get(k)))}
        if tokenizer is not None:
            for key, token_id in (("bos_token", tokenizer.bos_id), ("eos_token", tokenizer.eos_id)):
                if key not in context and token_id is not None:
                    name = next((n for n, i in tokenizer.special_tokens.items() if i == token_id), None)
                    if name is not None:
                        context[key] = name
        template = find_chat_template(model_dir, config)
        if template is None:
            return cls.builtin_phi2()
        return cls(template=template, context=context)

    @classmethod
    def builtin_phi2(cls) -> ChatFormat:
        return cls(template=PHI2_TEMPLATE, builtin=True, stop_strings=("\nInstruct:",))

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        return render_template(self.template, messages, add_generation_prompt=add_generation_prompt, **self.context)


def _single_gguf(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    return found[0] if len(found) == 1 else None


def find_chat_template(model_dir: Path, config: dict[str, Any]) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template:
        return template
    if not model_dir.is_dir():
        return None
    if (model_dir / "chat_template.jinja").exists():
        return (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if (model_dir / "chat_template.json").exists():
        return read_json(model_dir / "chat_template.json").get("chat_template") or None
    return None


def build_chat_prompt(
    tokenizer: Tokenizer, chat_format: ChatFormat, messages: list[dict[str, Any]], max_tokens: int
) -> list[int]:
    """Prompt ids for `messages` (ending with the user's turn), at most `max_tokens` long."""
    if not messages:
        raise PromptTemplateError("A chat prompt needs at least one message.")
    system = [m for m in messages[:1] if m.get("role") == "system"]
    history, last = list(messages[len(system) : -1]), dict(messages[-1])
    while True:
        ids = encode_chat(tokenizer, chat_format, [*system, *history, last])
        if len(ids) <= max_tokens:
            return ids
        if history:
            del history[: 2 if len(history) > 1 and history[1].get("role") == "assistant" else 1]
            continue
        last["content"] = _drop_head(tokenizer, str(last.get("content", "")), len(ids) - max_tokens)
        if not last["content"]:
            raise PromptTemplateError(
                f"The system prompt and chat format alone need more than {max_tokens} tokens; "
                "raise maxContextLength or shorten the system prompt."
            )


def _drop_head(tokenizer: Tokenizer, text: str, excess: int) -> str:
    ids = tokenizer.encode(text)
    return tokenizer.decode(ids[min(len(ids), excess + 1) :]) if len(ids) > excess else ""


def encode_chat(tokenizer: Tokenizer, chat_format: ChatFormat, messages: list[dict[str, Any]]) -> list[int]:
    """Render and encode `messages`; content never yields special ids (see the module docstring)."""
    guard = _ContentGuard(tokenizer, chat_format.template)
    safe = [{k: v if k == "role" else guard.hide_value(v) for k, v in m.items()} for m in messages]
    rendered = chat_format.render(safe, add_generation_prompt=True)
    return tokenizer.encode_segments(guard.segments(rendered))


class _ContentGuard:
    """Swaps risky content characters for placeholders and back (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, template: str):
        names = tokenizer.special_tokens
        self._risky = {n[0] for n in names if n} | {n[-1] for n in names if n}
        self._taken = set(template)
        self._to_placeholder: dict[str, str] = {}
        self._to_char: dict[str, str] = {}

    def _placeholder(self, char: str) -> str:
        if char not in self._to_placeholder:
            code = PLACEHOLDER_BASE + len(self._to_placeholder)
            while chr(code) in self._taken:
                code += 1
            self._taken.add(chr(code))
            self._to_placeholder[char], self._to_char[chr(code)] = chr(code), char
        return self._to_placeholder[char]

    def hide(self, text: str) -> str:
        table = {ord(c): self._placeholder(c) for c in set(text) if c in self._risky or ord(c) >= PLACEHOLDER_BASE}
        return text.translate(table) if table else text

    def hide_value(self, value: Any) -> Any:
        """`hide` applied to every string inside message fields (content parts, names...)."""
        if isinstance(value, str):
            return self.hide(value)
        if isinstance(value, list):
            return [self.hide_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.hide_value(v) for k, v in value.items()}
        return value

    def segments(self, rendered: str) -> list[tuple[str, bool]]:
        """(text, may_hold_specials) runs: template text, and restored content characters."""
        if not self._to_char:
            return [(rendered, True)]
        runs = regex.split("([" + "".join(map(regex.escape, self._to_char)) + "]+)", rendered)
        return [
            ("".join(self._to_char[c] for c in run), False) if i % 2 else (run, True)
            for i, run in enumerate(runs)
            if run
        ]
