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
from runtime.devices import DEVICE_NAMES
from runtime.precision import PRECISION_NAMES

DEVICES = tuple(name for name in DEVICE_NAMES if ":" not in name)  # plus "cuda:N" (`_check_device`)
PRECISIONS = PRECISION_NAMES


def setting(default: Any = None, doc: str = "", *, factory: Any = None, choices: tuple = (),
            minimum: float | None = None, maximum: float | None = None, expected: str = "") -> Any:
    """A settings field with everything said about it in one place: its default, what it does (the
    editors' setting descriptions are generated from `doc`, see `settings_schema.py`), and what
    values are good: `choices`, a `minimum`/`maximum`, or `expected` (a description checked by
    `_CHECKS`)."""
    meta = dict(doc=doc, choices=choices, minimum=minimum, maximum=maximum, expected=expected)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class CompletionSettings:
    max_tokens: int = setting(48, "Most tokens generated for one inline completion.", minimum=1, maximum=8192)
    context_tokens: int = setting(1024, "Tokens of the file around the cursor sent to the model.",
                                  minimum=16, maximum=131072)
    multiline: bool = setting(True, "Allow completions that span several lines (up to the end of the block).")
    wait_for_model_seconds: float = setting(
        60.0, "How long a completion asked for while the model loads waits for it (0: answer empty at once).",
        minimum=0.0, maximum=3600.0, expected="a number of seconds from 0 to 3600")
    stop_early: bool = setting(True, "Stop generating as soon as the streamed suggestion is complete "
                                     "(the post-processing rules watch the stream).")
    prompt_lookup: bool = setting(True, "Draft tokens copied from n-gram matches in the prompt, checked by "
                                        "the model in one step (greedy output unchanged).")


@dataclass
class ChatSettings:
    max_tokens: int = setting(512, "Most tokens generated for one chat reply.", minimum=1, maximum=8192)
    temperature: float = setting(0.0, "Sampling temperature for chat (0 = greedy).", minimum=0.0, maximum=5.0)
    top_k: Optional[int] = setting(None, "Sample only from the k most likely tokens in chat (null = all).",
                                   minimum=1, expected="a positive integer or null")


@dataclass
class Settings:
    model: str = setting("smollm2", "Model: an alias (smollm2, phi-2, phi-3, llama-2, llama-3, mistral), a "
                                    "Hugging Face repo id, a local directory or a .gguf file.",
                         expected="a model alias, repo id or path")
    checkpoint_path: Optional[str] = setting(
        None, "A converted or Hugging Face checkpoint folder to load; wins over quill.model.")
    device: str = setting("auto", "Where the model runs. auto picks DirectML, then CUDA, then MPS, then CPU.",
                          choices=DEVICES, expected=f"one of {', '.join(DEVICES)} (or cuda:N)")
    precision: str = setting("auto", "Weight and activation precision: int8 / int4 keep bfloat16 activations "
                                     "with quantized weights; float32-int4 (a CPU's auto where the weights "
                                     "are 4-bit already) computes in float32.", choices=PRECISIONS)
    max_context_length: int = setting(1500, "Tokens of chat history kept in a prompt (oldest turns are dropped "
                                             "first).", minimum=64, maximum=131072)
    history: bool = setting(True, "Keep chat history per workspace folder across restarts.")
    data_dir: Optional[str] = setting(None, "Where chat history is stored (default: the user data folder, or "
                                            "$QUILL_DATA_DIR).")
    cache_dir: Optional[str] = setting(None, "Where converted models are cached (default: the user cache "
                                             "folder, or $QUILL_CACHE_DIR).")
    completion: CompletionSettings = setting(factory=CompletionSettings)
    chat: ChatSettings = setting(factory=ChatSettings)

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


# Checks that a choice list or a range cannot say; every other field is checked from its metadata.
_CHECKS = {
    "device": _check_device,
    "model": lambda v: bool(v.strip()),
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _expected(f: dataclasses.Field, kind: str) -> str:
    """How the problem message describes a good value of field `f` (of type description `kind`)."""
    meta = f.metadata
    if meta.get("expected"):
        return meta["expected"]
    if meta.get("choices"):
        return f"one of {', '.join(meta['choices'])}"
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and high is not None:
        return f"{kind} from {_number(low)} to {_number(high)}"
    return kind


def _valid(f: dataclasses.Field, value: Any) -> bool:
    """Whether a value of the right type is also a good one for field `f`."""
    meta = f.metadata
    if value is None:
        return True  # an Optional field's null (type-checked before)
    if f.name in _CHECKS:
        return _CHECKS[f.name](value)
    if meta.get("choices") and value not in meta["choices"]:
        return False
    if meta.get("minimum") is not None and value < meta["minimum"]:
        return False
    return meta.get("maximum") is None or value <= meta["maximum"]


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
    if ok and not _valid(f, value):
        ok, kind = False, _expected(f, "an integer" if base == "int" else "a number")
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
