"""Rendering a model's `chat_template` the way Hugging Face's `apply_chat_template` does, in a
sandbox.

Templates come from downloaded repos, so they are untrusted code: they run in jinja2's
`ImmutableSandboxedEnvironment` (no attribute access to Python internals, no mutation of lists or
dicts passed in) with the environment settings and helpers transformers provides
(`transformers/utils/chat_template_utils.py`): `trim_blocks`, `lstrip_blocks`, the `loopcontrols`
extension, a `{% generation %}` block that just renders its body, `raise_exception`,
`strftime_now`, a `tojson` that does not HTML-escape, and a `namespace` that refuses underscore
names. The same template and messages render to the same string, byte for byte. One deliberate
difference: touching an unsafe attribute fails at once instead of yielding an empty Undefined.

Every failure — syntax error, `raise_exception(...)`, a sandbox violation — becomes a
`PromptTemplateError` naming the problem.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime.errors import PromptTemplateError


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; for
    prompting it renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller) -> str:
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """jinja's `namespace` that rejects underscore-prefixed names, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set the attribute {name!r}")


class _Dict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """jinja's sandbox turns an unsafe attribute into an Undefined that only fails when used
    further (`{{ f.__globals__ }}` prints nothing); here the access itself fails."""

    def unsafe_undefined(self, obj: Any, attribute: str):
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _StrictSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _Dict()
    env.globals["namespace"] = _Namespace
    return env


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    try:
        return _environment().from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise PromptTemplateError(
            f"The model's chat template does not parse (line {err.lineno}: {err.message}). "
            "Fix chat_template in tokenizer_config.json or use another model."
        ) from err


def render_template(
    source: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **context: Any
) -> str:
    """The template's text for `messages`; `context` carries bos_token, eos_token and the like."""
    template = compile_template(source)
    try:
        return template.render(
            messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **context
        )
    except jinja2.exceptions.SecurityError as err:
        raise PromptTemplateError(
            f"The model's chat template tried to leave its sandbox ({err}); it was stopped. "
            "Do not use this model's chat template; it may be malicious."
        ) from err
    except jinja2.exceptions.TemplateError as err:
        raise PromptTemplateError(f"The model's chat template refused the conversation: {err}") from err
    except Exception as err:  # a template can fail in any Python way (TypeError, KeyError ...)
        raise PromptTemplateError(f"The model's chat template failed: {type(err).__name__}: {err}") from err
