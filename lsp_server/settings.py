"""Server settings: a tree of dataclasses with defaults, read from the editor and the command line.

Sources, later ones winning field by field: defaults < `initializationOptions` <
`workspace/configuration` (section `quill`) or `workspace/didChangeConfiguration` < command-line
flags of `quill serve` (flags are what the user typed when starting the server by hand; editors
that launch the server pass none). A bad value never stops the server: it is reported in the
returned problem list (the server shows it with `window/showMessage`) and the default is kept,
as jedi-language-server does with its initialization options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from lsp_server.protocol import camel

DEVICES = ("auto", "cpu", "cuda", "mps", "directml")
PRECISIONS = ("auto", "float32", "float16", "bfloat16", "int8", "int4", "float32-int4")


@dataclass
class CompletionSettings:
    max_tokens: int = 48  # new tokens per suggestion
    context_tokens: int = 1024  # prefix + suffix window around the cursor
    multiline: bool = True  # allow multi-line suggestions at a new block
    wait_for_model_seconds: float = 60.0  # a request sent while the model loads waits this long
    stop_early: bool = True  # stop generating once the streamed suggestion is complete
    prompt_lookup: bool = True  # greedy drafts copied from n-gram matches in the prompt


@dataclass
class ChatSettings:
    max_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_k: Optional[int] = None


@dataclass
class Settings:
    model: str = "smollm2"  # alias, HF repo id, directory, .gguf or model.pth
    checkpoint_path: Optional[str] = None  # a converted/HF checkpoint dir; wins over `model`
    device: str = "auto"
    precision: str = "auto"
    max_context_length: int = 1500  # chat prompt budget in tokens (history is clipped to it)
    history: bool = True
    data_dir: Optional[str] = None  # where chat history lives; QUILL_DATA_DIR env too
    cache_dir: Optional[str] = None  # where converted models live; QUILL_CACHE_DIR env too
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)

    @property
    def model_ref(self) -> str:
        """What to hand to the runtime's store: the checkpoint path if set, else the model."""
        return self.checkpoint_path or self.model

    def load_key(self) -> tuple:
        """Fields whose change needs the model reloaded."""
        return (self.model_ref, self.device, self.precision, self.cache_dir)


def _check_device(value: str) -> bool:
    base, _, index = value.partition(":")
    return base in DEVICES and (not index or index.isdigit())


# field name -> (validator, what a good value looks like); fields not listed only type-check
_RULES = {
    "device": (_check_device, f"one of {', '.join(DEVICES)} (or cuda:N)"),
    "precision": (lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "model": (lambda v: bool(v.strip()), "a model alias, repo id or path"),
    "max_context_length": (lambda v: 64 <= v <= 131072, "an integer from 64 to 131072"),
    "max_tokens": (lambda v: 1 <= v <= 8192, "an integer from 1 to 8192"),
    "context_tokens": (lambda v: 16 <= v <= 131072, "an integer from 16 to 131072"),
    "temperature": (lambda v: 0.0 <= v <= 5.0, "a number from 0 to 5"),
    "wait_for_model_seconds": (lambda v: 0.0 <= v <= 3600.0, "a number of seconds from 0 to 3600"),
    "top_k": (lambda v: v is None or v >= 1, "a positive integer or null"),
}


def merge(base: Any, raw: Any, path: str = "quill") -> tuple[Any, list[str]]:
    """A copy of the dataclass `base` updated from the camelCase dict `raw`, plus problems."""
    problems: list[str] = []
    if raw is None:
        return base, problems
    if not isinstance(raw, dict):
        return base, [f"Setting `{path}` should be an object; ignoring it."]
    updates = {}
    for f in dataclasses.fields(base):
        key = camel(f.name)
        if key not in raw:
            continue
        current = getattr(base, f.name)
        if dataclasses.is_dataclass(current):
            updates[f.name], sub = merge(current, raw[key], f"{path}.{key}")
            problems += sub
            continue
        value, problem = _coerce(f, raw[key], f"{path}.{key}")
        if problem:
            problems.append(problem)
        else:
            updates[f.name] = value
    return dataclasses.replace(base, **updates), problems


def _coerce(f: dataclasses.Field, value: Any, path: str) -> tuple[Any, Optional[str]]:
    default = f.default if f.default is not dataclasses.MISSING else None
    optional = f.type.startswith("Optional[")
    base = f.type.removeprefix("Optional[").removesuffix("]")
    if value is None and optional:
        return None, None
    check, kind = _KINDS[base]
    ok = check(value)
    rule = _RULES.get(f.name)
    if ok and rule and not rule[0](value):
        ok, kind = False, rule[1]
    if not ok:
        return None, f"Setting `{path}` = {value!r} is not valid (expected {kind}); using {default!r}."
    return (float(value) if base == "float" else value), None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# annotation (as written above) -> (type check, description for the message)
_KINDS = {
    "int": (_is_int, "an integer"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def from_cli(args: Any) -> dict:
    """The camelCase settings dict given by `quill serve`/`quill chat` flags (unset flags omitted)."""
    raw: dict = {}
    model = getattr(args, "model", None) or getattr(args, "hf_model", None)
    if model:
        raw["model"] = model
    for flag, key in (
        ("checkpoint_path", "checkpointPath"),
        ("device", "device"),
        ("precision", "precision"),
        ("max_context_length", "maxContextLength"),
        ("data_dir", "dataDir"),
        ("cache_dir", "cacheDir"),
    ):
        if getattr(args, flag, None) is not None:
            raw[key] = getattr(args, flag)
    if getattr(args, "disable_history", False):
        raw["history"] = False
    return raw


def to_dict(settings: Settings) -> dict:
    """The effective settings as camelCase (for quill/status and logs)."""
    from lsp_server.protocol import to_wire

    return to_wire(settings)
