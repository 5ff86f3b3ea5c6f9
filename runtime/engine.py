"""The engine facade: load a converted checkpoint, generate from token ids, reuse the KV cache.

The language server and the CLI talk to the runtime only through `Engine` (plus the tokenizer and
prompt builders). One engine serves one sequence at a time: it keeps the token ids whose keys and
values are in its cache, and the next `generate` prefills only what follows the longest common
prefix (an editor sends nearly the same prompt on every keystroke). Calls are serialized by a
lock; run them from a worker thread, never on an event loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .checkpoint import Manifest, load_tensors, read_manifest
from .config import ModelConfig
from .devices import Device, dtype_name, resolve_device, resolve_dtype
from .errors import CheckpointError
from .generate import ContextLengthError, TextStream, check_fits, generate
from .model import Transformer
from .sampling import Sampler

__all__ = ["ContextLengthError", "Engine", "GenerationConfig", "GenerationResult", "load_engine"]

Progress = Callable[[str, int, int], None]
DEFAULT_MAX_SEQ_LENGTH = 4096  # KV cache size when the caller does not choose one
LOAD_WARM_PROMPT = 16  # prefill buckets compiled before `Engine.load` returns; `warm_next` the needed rest


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    stop_ids: frozenset = frozenset()  # added to the tokenizer's own stop ids
    stop_strings: tuple = ()
    seed: int | None = None
    # Prompt-lookup speculative decoding: draft tokens copied from n-gram matches in the prompt,
    # verified in one batched forward pass; exact under greedy (ignored when sampling).
    prompt_lookup: bool = False


@dataclass
class GenerationResult:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    reused_tokens: int  # prompt tokens whose KV came from the previous call
    computed_tokens: int  # prompt tokens actually prefilled
    draft_tokens: int = 0  # prompt-lookup tokens proposed
    accepted_draft_tokens: int = 0  # of those, kept by greedy verification


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer,
        *,
        device: Device,
        checkpoint_dir: Path | None = None,
        manifest: Manifest | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.config: ModelConfig = model.config
        self.device = device.name
        self.dtype = dtype_name(model.tok_embeddings.weight.dtype)
        self.checkpoint_dir = checkpoint_dir
        self.manifest = manifest
        self._cached_ids: list[int] = []  # tokens whose keys/values the cache holds, from position 0
        self.cpu_kernel: str | None = None  # the CPU matrix-vector path in use ("avx512", "avx2", "plain")
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        checkpoint_dir: str | os.PathLike,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_seq_length: int | None = None,
        progress: Progress | None = None,
        compile: bool | str = "auto",
    ) -> "Engine":
        """Load a converted checkpoint (see `checkpoint.py`) onto `device` in `precision`.

        `precision` "int8" / "int4" keeps bfloat16 activations and quantizes the linear weights;
        "float32-int4" keeps float32 activations and stores weights that are 4-bit already as
        their codes, exactly (see `quantize.py`); "auto" picks it on a CPU when the model's weights
        allow it, else float32. `compile`: "auto" compiles the decode step (with CUDA graphs on
        CUDA; on a CPU for float32-int4) and warms it up here, on the loading thread (which must
        be the generating one); True compiles on any device (on a CPU the first compile takes
        about a minute, the on-disk cache makes the next start quick); False never. Compiled
        prefill (CUDA) gets its shortest bucket here; longer prompts run eagerly until
        `warm_next` has compiled their bucket (only buckets that a prompt has needed).
        """
        from .tokenizer import load_tokenizer

        report = progress or (lambda phase, done, total: None)
        checkpoint_dir = Path(checkpoint_dir)
        manifest = read_manifest(checkpoint_dir)
        config = ModelConfig.from_hf_config(manifest.config)
        if manifest.architecture != config.family:
            raise CheckpointError(
                f"{checkpoint_dir}: the manifest says {manifest.architecture!r} but config.json describes "
                f"a {config.family!r} model. Remove it with `quill rm` and convert again."
            )
        dev = resolve_device(device)
        # On a CPU, "auto" keeps float32 arithmetic and stores weights that are 4-bit already (a
        # Q4 GGUF) as their codes: the same answers as float32, read from a quarter of the bytes.
        cpu_auto = dev.kind == "cpu" and (precision or "auto").strip().lower() == "auto"
        precision, weight_only = split_precision(precision)
        dtype = resolve_dtype(precision, dev)
        report("load", 0, 2)
        tokenizer = load_tokenizer(checkpoint_dir)
        tensors = load_tensors(checkpoint_dir, manifest, device=dev.torch_device, dtype=dtype)
        report("load", 1, 2)
        model = build_model(config, tensors, dev, max_seq_length=max_seq_length)
        del tensors
        if weight_only:
            from .quantize import quantize

            # On a CPU the int4 head's top-8 logits are recomputed in float32: greedy output
            # then stays close to the unquantized model's (benchmarks/README.md).
            quantize(model, "int4-rescored" if weight_only == "int4" and dev.kind == "cpu" else weight_only)
        elif cpu_auto:
            from .quantize import quantize_float32_int4

            weight_only = "float32-int4" if quantize_float32_int4(model) else None
        report("load", 2, 2)
        kernel = cpu_kernel_path(model) if dev.kind == "cpu" else None
        # float32-int4 decodes through a fused loop over the codes that only the compiler makes.
        if compile is True or (compile == "auto" and (dev.kind == "cuda" or weight_only == "float32-int4")):
            from .compile import compile_model, warmup

            report("compile", 0, 1)
            model = compile_model(model)
            # Decode and the shortest prompts (a completion's few new tokens after prefix reuse)
            # now; longer prompt buckets run eagerly until `warm_next` compiles them, so the
            # first answer does not wait for every bucket (minutes for a 7B model, cold).
            warmup(model, max_prompt=LOAD_WARM_PROMPT)  # junk in the KV cache: nothing is cached
            model.lazy_prefill = True
            report("compile", 1, 1)
        engine = cls(model, tokenizer, device=dev, checkpoint_dir=checkpoint_dir, manifest=manifest)
        if weight_only:
            engine.dtype = weight_only
        engine.cpu_kernel = kernel
        return engine

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    def generate(
        self,
        prompt_ids: Sequence[int],
        gen: GenerationConfig | None = None,
        *,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        gen = gen or GenerationConfig()
        prompt_ids = [int(t) for t in prompt_ids]
        check_fits(self.model, len(prompt_ids))
        tokenizer_stops = getattr(self.tokenizer, "stop_ids", frozenset()) or frozenset()
        with self._lock, _on(self.model):
            # Re-run at least the last prompt token: its logits are not kept.
            reuse = min(common_prefix_length(self._cached_ids, prompt_ids), len(prompt_ids) - 1)
            self._cached_ids = prompt_ids[:reuse]  # still valid whatever happens below
            out = generate(
                self.model,
                prompt_ids,
                start_pos=reuse,
                max_new_tokens=gen.max_new_tokens,
                sampler=Sampler(gen.temperature, gen.top_k, gen.top_p, gen.seed),
                stop_ids=frozenset(gen.stop_ids) | frozenset(tokenizer_stops),
                text=TextStream(self.tokenizer, gen.stop_strings, on_text),
                should_stop=should_stop,
                prompt_lookup=gen.prompt_lookup,
            )
            self._cached_ids = out.cached_ids
        return GenerationResult(
            token_ids=out.token_ids,
            text=out.text,
            finish_reason=out.finish_reason,
            prompt_tokens=len(prompt_ids),
            reused_tokens=reuse if out.computed_tokens else 0,
            computed_tokens=out.computed_tokens,
            draft_tokens=out.draft_tokens,
            accepted_draft_tokens=out.accepted_draft_tokens,
        )

    def warm_next(self) -> int | None:
        """Compile the shortest prefill bucket that a prompt has needed and that is not compiled
        yet (see `Engine.load`); returns its length, or None when there is none. Takes seconds
        to a minute: call it when idle. It runs on the cache's last rows; the cached prefix
        keeps the rows before them."""
        pending = self.pending_warmup()
        if not pending:
            return None
        length = pending[0]
        with self._lock, _on(self.model):
            start = self.model.max_seq_length - length
            self._cached_ids = self._cached_ids[:start]
            self.model.warm_prefill(length, start)
        return length

    def pending_warmup(self) -> list[int]:
        """Prefill buckets `warm_next` would compile, shortest first."""
        wanted = getattr(self.model, "wanted_buckets", None)
        return wanted() if wanted is not None else []

    def reset(self) -> None:
        """Forget the cached sequence (the next call prefills its whole prompt)."""
        with self._lock:
            self._cached_ids = []


def cpu_kernel_path(model) -> str:
    """Which CPU code path the model's matrix products run: Quill's 4-bit kernel's path when its
    layers use it ("avx512", "avx2", "plain"), else PyTorch's own dispatch ("aten-avx2", ...)."""
    from .kernels import grid_int4_cpu
    from .quantize import GridInt4Linear

    if any(isinstance(m, GridInt4Linear) and m.use_kernel for m in model.modules()):
        return grid_int4_cpu.kernel_path() or "plain"
    return "aten-" + str(torch.backends.cpu.get_cpu_capability()).lower()


def _on(model) -> contextlib.AbstractContextManager:
    """Make the model's CUDA device the current one: Triton kernels launch on the current
    device, and so do events recorded without a stream (cuda:1 is a valid setting)."""
    device = model.tok_embeddings.weight.device
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


WEIGHT_ONLY_PRECISIONS = ("int8", "int4")


def split_precision(precision: str | None) -> tuple[str, str | None]:
    """"int8"/"int4" mean bfloat16 activations with quantized weights, "float32-int4" float32
    activations with 4-bit weight codes; other names pass through."""
    name = (precision or "auto").strip().lower()
    if name in WEIGHT_ONLY_PRECISIONS:
        return "bfloat16", name
    if name == "float32-int4":
        return "float32", name
    return name, None


def build_model(
    config: ModelConfig,
    tensors: dict[str, torch.Tensor],
    device: Device,
    *,
    max_seq_length: int | None = None,
) -> Transformer:
    """Build the model around already-loaded native tensors (no second copy of the weights)."""
    with torch.device("meta"):
        model = Transformer(config)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"The checkpoint's tensors do not match its config.json ({err}). Convert the model again."
        ) from err
    model.eval().requires_grad_(False)
    seq = max_seq_length or min(config.max_position_embeddings, DEFAULT_MAX_SEQ_LENGTH)
    model.setup_caches(max_batch_size=1, max_seq_length=seq)
    if device.kind == "directml":
        from .fast_paths import use_directml_ops
        from .kernels.directml_ops import DirectMLOps

        use_directml_ops(model, DirectMLOps.load())
    return model


def load_engine(
    ref: str | None,
    *,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    compile: bool | str = "auto",
) -> Engine:
    """Resolve a model reference (alias, repo id, folder, .gguf, ...) to a converted checkpoint,
    converting on first use, and load it."""
    from .store import resolve_model
    from .store.cache import default_cache_dir

    checkpoint_dir = resolve_model(ref, cache_dir=cache_dir, progress=progress)
    if compile is True or (compile == "auto" and resolve_device(device).kind in ("cuda", "cpu")):
        from .compile import configure_compile_cache

        configure_compile_cache(cache_dir or default_cache_dir())  # the second start is quick
    return Engine.load(checkpoint_dir, device=device, precision=precision, progress=progress, compile=compile)
