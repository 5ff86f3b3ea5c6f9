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

from .checkpoint import Manifest, load_tensors
from .compile import VERIFY_ROWS
from .config import ModelConfig
from .devices import Device, dtype_name, resolve_device
from .generate import ContextLengthError, TextStream, generate
from .loading import build_model, compile_and_warm, cpu_kernel_path, read_config, wants_compile
from .model import Transformer
from .precision import plan_precision, quantize_weights
from .progress import ProgressCallback
from .sampling import Sampler

__all__ = ["ContextLengthError", "Engine", "GenerationConfig", "GenerationResult", "load_engine"]


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
        self.graph_key: str | None = None  # the compiled graphs' kind (`whole_graph_cache`), on a CPU
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        checkpoint_dir: str | os.PathLike,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_seq_length: int | None = None,
        progress: ProgressCallback | None = None,
        compile: bool | str = "auto",
    ) -> "Engine":
        """Load a converted checkpoint (see `checkpoint.py`) onto `device` in `precision`.

        `precision` "int8" / "int4" keeps bfloat16 activations and quantizes the linear weights;
        "float32-int4" keeps float32 activations and stores weights that are 4-bit already as
        their codes, exactly; "auto" picks it on a CPU when the model's weights allow it, else
        float32 (see `precision.py`). `compile`: "auto" compiles the decode step (with CUDA graphs on
        CUDA; on a CPU for float32-int4) and warms it up here, on the loading thread (which must
        be the generating one); True compiles on any device (on a CPU the first compile takes
        about a minute, the on-disk cache makes the next start quick); False never. On a CPU
        "auto" compiles the whole model only when the compile cache holds its graph (see
        `whole_graph_cache`), else each layer on its own (`model.regional`: ready 20-30 s
        sooner on two cores, decode about 14% slower); "whole" compiles the whole model and
        notes it in the cache (`runtime.precompile`). Compiled
        prefill (CUDA) gets its shortest bucket here; longer prompts run eagerly until
        `warm_next` has compiled their bucket (only buckets that a prompt has needed).
        """
        from .tokenizer import load_tokenizer
        from .whole_graph_cache import graph_key

        report = progress or (lambda phase, done, total: None)
        checkpoint_dir = Path(checkpoint_dir)
        manifest, config = read_config(checkpoint_dir)
        dev = resolve_device(device)
        plan = plan_precision(precision, dev)
        report("load", 0, 2)
        tokenizer = load_tokenizer(checkpoint_dir)
        tensors = load_tensors(checkpoint_dir, manifest, device=dev.torch_device, dtype=plan.dtype)
        report("load", 1, 2)
        model = build_model(config, tensors, dev, max_seq_length=max_seq_length)
        del tensors  # the model holds the weights now: the ones quantization swaps out are freed
        scheme = quantize_weights(model, plan, dev)
        report("load", 2, 2)
        kernel = cpu_kernel_path(model) if dev.kind == "cpu" else None
        key = None
        if wants_compile(compile, dev, scheme):
            # "auto" on a CPU: per-layer graphs while the compile cache lacks the whole one.
            key = graph_key(manifest.config, scheme, kernel, model.max_seq_length) if (
                compile in ("auto", "whole") and dev.kind == "cpu") else None
            model = compile_and_warm(model, report, key, whole=compile == "whole")
        engine = cls(model, tokenizer, device=dev, checkpoint_dir=checkpoint_dir, manifest=manifest)
        engine.graph_key = key
        if scheme:
            engine.dtype = scheme
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
        prompt_ids = [int(t) for t in prompt_ids]  # `generate` checks that they fit the cache
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

    def warm_next(self) -> int | str | None:
        """Compile the next step that idle time is for (see `Engine.load`), and return what it
        was: "verify" (the prompt-lookup verification step, left to idle time after a cold
        compile) before the shortest prefill bucket that a prompt has needed (its length);
        None when there is nothing. Takes seconds to a minute: call it when idle. It runs on the
        cache's last rows; the cached prefix keeps the rows before them."""
        pending = self.pending_warmup()
        if not pending:
            return None
        step = pending[0]
        with self._lock, _on(self.model):
            rows = VERIFY_ROWS if step == "verify" else step
            start = self.model.max_seq_length - rows
            self._cached_ids = self._cached_ids[:start]
            if step == "verify":
                self.model.warm_verify(start)
            else:
                self.model.warm_prefill(step, start)
        return step

    def adopt_whole_graph(self) -> bool:
        """Replace per-layer steps (`model.regional`) with the whole-model graph once the
        compile cache holds it (`whole_graph_cache`: what the server's background compile
        leaves); True when done. With the cache warm it takes seconds (a few on two cores for
        SmolLM2): call it when idle. The cached sequence is forgotten."""
        from . import whole_graph_cache
        from .loading import compile_and_warm

        model = self.model
        if not getattr(model, "regional", False) or self.graph_key is None:
            return False
        if not whole_graph_cache.is_cached(self.graph_key):
            return False
        with self._lock, _on(model):
            eager = model.model
            for module in (*eager.layers, eager.head):
                module._compiled_call_impl = None  # undo nn.Module.compile
            self.model = compile_and_warm(eager, lambda phase, done, total: None, self.graph_key)
            self._cached_ids = []
        return not self.model.regional

    def pending_warmup(self) -> list[int | str]:
        """What `warm_next` would compile, in its order: "verify", then prefill buckets."""
        wanted = getattr(self.model, "wanted_buckets", None)
        verify = ["verify"] if getattr(self.model, "verify_pending", False) else []
        return verify + (wanted() if wanted is not None else [])

    def reset(self) -> None:
        """Forget the cached sequence (the next call prefills its whole prompt)."""
        with self._lock:
            self._cached_ids = []


def _on(model) -> contextlib.AbstractContextManager:
    """Make the model's CUDA device the current one: Triton kernels launch on the current
    device, and so do events recorded without a stream (cuda:1 is a valid setting)."""
    device = model.tok_embeddings.weight.device
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def load_engine(
    ref: str | None,
    *,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
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
