"""torch.compile for generation: a CUDA-graph decode step, bucketed prefill, an on-disk cache.

gpt-fast's recipe (`generate.py`): `decode_one_token` compiled with `mode="reduce-overhead"`
(CUDA graphs: one launch per token instead of hundreds) and `fullgraph=True`, fixed shapes, so
one graph serves every step. Prefill sees a new length on almost every request; compiling each
would stall the editor, so prompt lengths are padded up to a few buckets and each bucket is
compiled once during warm-up: after `warmup()`, nothing recompiles.

Padding is safe with the static KV cache: pad tokens get the positions just past the prompt, so
their keys and values land where the causal mask hides them from every real query and where the
following decode steps overwrite them before any query can see them. Attention and the cache
write follow `input_pos`, not the order in the sequence, so the real last token is moved to the
end of the padded sequence and the model's own `last_only` picks its logits.

`CompiledModel` wraps a `Transformer` with the same call signature, so `generate()` and `Engine`
run it unchanged: `engine.model = compile_model(engine.model)` (see `compile_engine`). Compiled
code lives in Inductor's on-disk cache (`configure_compile_cache`, under Quill's cache folder),
which turns the minutes of a cold compile into seconds on the next start.

On the CPU there are no CUDA graphs; Inductor's C++ code still fuses the small per-layer ops of
decode (norms, rotary, activations), which is what costs at batch 1. Whether it pays is measured
in `benchmarks/cpu.py`; prefill on the CPU stays eager (its time is in the matmuls).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .prompt_lookup import MAX_DRAFT

log = logging.getLogger(__name__)

DEFAULT_PREFILL_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096)
KV_STEP = 64  # off CUDA, attention reads the cache up to the next multiple of this
GRAPHED_PREFILL_MAX = 64  # with CUDA graphs, prefill buckets up to this long replay one graph
# Without compiling (`eager_graphs`), eager prefill launches every small op from Python: on an H200
# Phi-3-mini int8 took 29 / 33 / 28 ms for 16 / 64 / 256 tokens eagerly, 52 ms for 1,536, so the
# buckets up to 256 replay graphs (16 tokens: 7.7 ms) and longer prompts stay eager.
EAGER_GRAPH_MAX = 256
EAGER_WARM_STEP = 512  # warm-up runs eager prefill at each multiple of this (see `warmup`)
VERIFY_ROWS = MAX_DRAFT + 1  # a prompt-lookup verification feeds the last token and its drafts
# `warmup` compiles the CPU's verification step only when decode compiled in less than this (the
# compile cache had it): cold, on two cores, it took 40 s more after decode's 40 s (SmolLM2-135M
# float32-int4), so a first start leaves it to idle time (`Engine.warm_next`).
VERIFY_AT_LOAD_S = 15.0
# Prompt lookup is used only where verifying VERIFY_ROWS tokens costs at most this many decode
# steps (`warm_verify` times both). SmolLM2 float32-int4 on two CPU cores: 1.93, and drafts then
# gave 1.12x over 12 generations of 48 tokens after code. On CUDA the graph of the eager
# multi-token forward has not been timed against the fused decode step: an H200 replayed a
# 16-token Phi-3-mini int8 prefill graph in 7.7 ms against 1.47 ms a decode step, which this
# bound turns down.
VERIFY_MAX_COST = 2.5


_triton_cache_set: str | None = None  # the TRITON_CACHE_DIR that configure_compile_cache chose


def configure_compile_cache(cache_dir: str | os.PathLike) -> Path:
    """Keep Inductor's FX-graph, AOTAutograd and Triton caches, and Triton's cache of Quill's own
    kernels, under `cache_dir/compile/...`, so they outlive a reboot that empties /tmp.

    The folder is per torch version (compiled artifacts do not survive an upgrade). An explicit
    `TORCHINDUCTOR_CACHE_DIR` or `TRITON_CACHE_DIR` set by the user wins. Inductor writes its own
    default (/tmp/torchinductor_<user>) into `TORCHINDUCTOR_CACHE_DIR` as soon as it asks for
    its cache folder, importing its config included, so that value does not count as the
    user's.
    """
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    version = torch.__version__.replace("+", "-")
    path = Path(cache_dir) / "compile" / f"torch-{version}"
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()):
        path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)  # read by Inductor at each compile
    # Triton keeps the kernels it compiles outside Inductor (runtime/kernels/gemv.py and the others) in
    # ~/.triton unless told; Inductor's own Triton kernels follow this variable too.
    global _triton_cache_set
    if os.environ.get("TRITON_CACHE_DIR") in (None, _triton_cache_set):
        _triton_cache_set = os.environ["TRITON_CACHE_DIR"] = str(path / "triton")
    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True
    return path


def bucket_length(n: int, buckets: Sequence[int], limit: int) -> int:
    """Smallest bucket >= n that fits `limit` positions; n itself when none does."""
    for b in buckets:
        if n <= b <= limit:
            return b
    return n


def _decode(model: nn.Module, idx: Tensor, input_pos: Tensor) -> Tensor:
    return model(idx, input_pos)  # [B, 1, V]


def _decode_upto(model: nn.Module, idx: Tensor, input_pos: Tensor, kv_len: int) -> Tensor:
    return model(idx, input_pos, kv_len=kv_len)  # [B, 1, V], attention over kv_len positions


def _prefill(model: nn.Module, idx: Tensor, input_pos: Tensor) -> Tensor:
    return model(idx, input_pos, last_only=True)  # [B, 1, V]


def _verify(model: nn.Module, idx: Tensor, input_pos: Tensor) -> Tensor:
    return model(idx, input_pos)  # [B, S, V]: every position's logits, for a draft's argmaxes


def _verify_upto(model: nn.Module, idx: Tensor, input_pos: Tensor, kv_len: int) -> Tensor:
    return model(idx, input_pos, kv_len=kv_len)  # [B, S, V], attention over kv_len positions


class _GraphedStep:
    """A step (a prefill bucket, or decode) captured in a CUDA graph, replayed for every call of its
    shape.

    A completion after prefix reuse prefills a few tokens, and the compiled step launches
    hundreds of kernels for them from Python: on an H100 the first token of Phi-3-mini bf16 took
    13 ms that way, 7 ms with the graph, which replays them in one launch. Its inputs and
    output are fixed buffers (the prompt is copied in, the logits copied out) in a memory pool
    of its own, which for these short buckets holds a few MB of activations."""

    def __init__(self, step: Callable, model: nn.Module, idx: Tensor, input_pos: Tensor):
        self.idx, self.input_pos = idx.clone(), input_pos.clone()
        # Run it first (compiling it, and letting Triton and cuBLAS set up) on a side stream, as
        # capture requires; the runs write the same keys and values as the replay will.
        side = torch.cuda.Stream(idx.device)
        side.wait_stream(torch.cuda.current_stream(idx.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                step(model, self.idx, self.input_pos)
        torch.cuda.current_stream(idx.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = step(model, self.idx, self.input_pos)

    def replay(self, idx: Tensor, input_pos: Tensor) -> Tensor:
        """The logits in the graph's own buffer, which the next replay overwrites."""
        self.idx.copy_(idx)
        self.input_pos.copy_(input_pos)
        self.graph.replay()
        return self.logits

    def __call__(self, idx: Tensor, input_pos: Tensor) -> Tensor:
        return self.replay(idx, input_pos).clone()


class _GraphedDecode:
    """The eager decode step, captured in one CUDA graph on its first call and replayed after:
    `compile_model`'s route for a model whose every layer and head run Quill's fused kernels
    (`fully_fused`). Such a step is nothing but those kernels, so torch.compile has nothing left
    to fuse and its start-up (tens of seconds, cold) buys nothing. On an H200, Phi-3-mini int8
    (`benchmarks/results/cuda-graph-probe-phi-3-mini-h200.json`): 1.47 ms a token replayed this
    way against 1.71-1.86 ms compiled with reduce-overhead, the same logits, and ready after
    13 s warm / 22 s cold against 27 / 92 s with the compile."""

    def __init__(self):
        self.graph: _GraphedStep | None = None

    def __call__(self, model: nn.Module, idx: Tensor, input_pos: Tensor) -> Tensor:
        if self.graph is None:
            self.graph = _GraphedStep(_decode, model, idx, input_pos)
        return self.graph.replay(idx, input_pos)  # the caller copies it out


def pad_prompt(idx: Tensor, input_pos: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Pad idx [B, S] at positions input_pos [S] (consecutive) to `length` tokens, keeping the
    last real token last. Pad tokens (id 0) sit at the positions after the prompt."""
    seqlen = idx.shape[1]
    pad = length - seqlen
    last_pos = input_pos[-1:]
    pad_pos = last_pos + torch.arange(1, pad + 1, device=idx.device, dtype=input_pos.dtype)
    idx_p = torch.cat([idx[:, :-1], idx.new_zeros(idx.shape[0], pad), idx[:, -1:]], dim=1)
    pos_p = torch.cat([input_pos[:-1], pad_pos, last_pos])
    return idx_p, pos_p


class CompiledModel(nn.Module):
    """A `Transformer` behind compiled decode / prefill steps, with the same call signature."""

    def __init__(
        self,
        model: nn.Module,
        *,
        decode: Callable,
        prefill: Callable | None,
        buckets: Sequence[int],
        decode_upto: Callable | None = None,
        graph_prefill: bool = False,
        graph_max: int = GRAPHED_PREFILL_MAX,
        eager_steps: bool = False,
        verify: Callable | None = None,
        regional: bool = False,
    ):
        super().__init__()
        self.model = model
        self._decode = decode
        self._prefill = prefill
        # Short prefill buckets as CUDA graphs (`_GraphedStep`), made when first compiled.
        self._graph_prefill = graph_prefill and prefill is not None
        self._graphs: dict[int, _GraphedStep] = {}
        self.buckets = tuple(sorted(buckets))
        self.graph_max = graph_max  # the longest prefill bucket replayed as a graph
        # With `eager_steps` nothing is compiled: decode and the buckets are CUDA graphs of the
        # eager model (`_GraphedDecode`), longer prompts run eagerly, and warming everything up
        # takes a fraction of a second per graph.
        self.eager_steps = eager_steps
        self.regional = regional  # the steps are the model with its layers compiled (`_regional`)
        self.compile_seconds = 0.0  # time spent in first calls (warm-up)
        # Off CUDA there are no graphs to keep static and reading a position is free: attention
        # then reads only the filled part of the cache, rounded up to KV_STEP positions.
        self.sized = decode_upto is not None
        self._decode_upto = decode_upto
        self.warmed: set[int] = set()  # prefill lengths (buckets) whose graph is compiled
        # With `lazy_prefill`, a prompt whose bucket is not compiled yet runs eagerly instead of
        # compiling it in the request's time (tens of seconds for a 7B model), and the bucket
        # is noted in `wanted`; `warm_prefill` compiles it when there is time (the server does
        # it while idle). Buckets no prompt has needed are never compiled.
        self.lazy_prefill = False
        self.wanted: set[int] = set()
        # Prompt-lookup verification (`generate()` feeds the last token and up to MAX_DRAFT
        # drafts, and reads every position's logits) as a step of its own: the eager forward
        # costs too much for it, a compiled one does not. On a CPU (SmolLM2-135M float32-int4,
        # two cores) compiled decode took 12.7 ms, the eager forward of 3 / 5 / 7 tokens
        # 22.6 / 29.7 / 34.7 ms, so speculation through it ran at 0.87-0.89x plain decode.
        # `verify` is that step: compiled with a symbolic length where attention is sized (any
        # 2 .. VERIFY_ROWS tokens, one graph), else run as a CUDA graph of VERIFY_ROWS tokens
        # (shorter drafts padded). `verify_tokens`, what `generate()` reads, stays 0 (one
        # token at a time) until `warm_verify` has compiled or captured it: `warmup` does when
        # that is quick, else it is left to idle time (`verify_pending`).
        self._verify = verify
        self._verify_fixed: Callable | None = None  # (idx, input_pos) -> logits, VERIFY_ROWS tokens
        self._verify_failed = False  # failed to compile, or costs too much (VERIFY_MAX_COST)
        self.verify_cost: float | None = None  # its time over a decode step's, once measured
        self.verify_tokens = 0

    # What `generate()` and `Engine` read from the model.
    @property
    def config(self):
        return self.model.config

    @property
    def tok_embeddings(self):
        return self.model.tok_embeddings

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    @property
    def max_batch_size(self) -> int:
        return self.model.max_batch_size

    def forward(
        self, idx: Tensor, input_pos: Tensor, *, last_only: bool = False, kv_len: int | None = None
    ) -> Tensor:
        """The model's forward. `kv_len` is the caller's count of cache positions filled after
        this call, as the model takes it; sized steps read up to it rounded up to KV_STEP (from
        `input_pos` when not given), fixed-shape steps read the whole cache."""
        seqlen = idx.shape[1]
        if self.sized:
            filled = int(input_pos[-1]) + 1 if kv_len is None else kv_len
            kv_len = min(-(-filled // KV_STEP) * KV_STEP, self.max_seq_length)
            if seqlen == 1:
                return self._decode_upto(self.model, idx, input_pos, kv_len)
            if not last_only and self._verify is not None and self.verify_tokens >= seqlen:
                return self._verify(self.model, idx, input_pos, kv_len)
            return self.model(idx, input_pos, last_only=last_only, kv_len=kv_len)
        if seqlen == 1:
            # Outputs of a CUDA-graph replay are overwritten by the next replay: copy them out.
            return self._decode(self.model, idx, input_pos).clone()
        if not last_only and self._verify_fixed is not None and self.verify_tokens >= seqlen:
            return self._verify_padded(idx, input_pos, kv_len)
        if self._prefill is None:
            return self.model(idx, input_pos, last_only=last_only)
        if not last_only:
            return self.model(idx, input_pos)
        start = int(input_pos[0])
        padded = bucket_length(seqlen, self.buckets, self.max_seq_length - start)
        if padded == seqlen and seqlen not in self.buckets:
            # No bucket fits: eager, reading only the filled part of the cache.
            return self.model(idx, input_pos, last_only=True, kv_len=kv_len)
        if padded not in self.warmed:
            if self.lazy_prefill:
                self.wanted.add(padded)
                return self.model(idx, input_pos, last_only=True)
            self.warmed.add(padded)  # compiled by this call
        idx_p, pos_p = pad_prompt(idx, input_pos, padded)
        if padded in self._graphs or self._capture(idx_p, pos_p):
            return self._graphs[padded](idx_p, pos_p)
        return self._prefill(self.model, idx_p, pos_p)

    def _verify_padded(self, idx: Tensor, input_pos: Tensor, kv_len: int | None) -> Tensor:
        """Every position's logits for idx [B, S] (S <= verify_tokens) at consecutive
        positions, through the fixed-length verification step: pad tokens follow at the next
        positions, where they write cache rows past the tokens that count (rows the next step
        writes again before any query reads them, as a rejected draft's), and their logits are
        dropped. `kv_len` (the caller's count of filled positions) gives the first position
        without reading `input_pos` back from the device."""
        seqlen, rows = idx.shape[1], self.verify_tokens
        start = kv_len - seqlen if kv_len is not None else int(input_pos[0])
        if start + rows > self.max_seq_length:  # no room for the padding at the cache's end
            return self.model(idx, input_pos)
        pad = idx.new_zeros(idx.shape[0], rows - seqlen)
        positions = torch.arange(start, start + rows, device=idx.device, dtype=input_pos.dtype)
        return self._verify_fixed(torch.cat([idx, pad], dim=1), positions)[:, :seqlen]

    @property
    def verify_pending(self) -> bool:
        """A verification step that `warm_verify` has not made yet (see `warmup`)."""
        return self._verify is not None and self.verify_tokens == 0 and not self._verify_failed

    @torch.no_grad()
    def warm_verify(self, start: int = 0) -> None:
        """Compile (or capture) the verification step on cache rows start .. start +
        VERIFY_ROWS - 1, which get junk, and let `generate()` use it. Nothing without a
        `verify` step; a failure is logged once and leaves one token at a time."""
        if not self.verify_pending:
            return
        device = self.tok_embeddings.weight.device
        rows = min(VERIFY_ROWS, self.max_seq_length - start)
        try:
            if self.sized:
                # Two lengths and two cache sizes: the symbolic graph is made now, not in a
                # request. Fresh tensors each time: a slice's strides would be guarded on.
                for n in (rows, 2):
                    self._verify(self.model, torch.zeros(1, n, dtype=torch.long, device=device),
                                 torch.arange(start, start + n, device=device), start + n)
            elif device.type == "cuda":
                self._verify_fixed = _GraphedStep(self._verify, self.model,
                                                  torch.zeros(1, rows, dtype=torch.long, device=device),
                                                  torch.arange(start, start + rows, device=device))
            else:  # fixed shapes without CUDA graphs: the step itself
                self._verify_fixed = lambda tokens, positions: self._verify(self.model, tokens, positions)
        except Exception:  # noqa: BLE001 - prompt lookup then decodes one token at a time
            log.warning("the prompt-lookup verification step could not be compiled; completions "
                        "decode one token at a time", exc_info=True)
            self._verify_failed = True
            return
        self.verify_tokens = rows
        self.verify_cost = self._verify_cost(start)
        if self.verify_cost > VERIFY_MAX_COST:
            log.info("prompt lookup: verifying %d tokens costs %.1f decode steps here (more than %.1f); "
                     "completions decode one token at a time", rows, self.verify_cost, VERIFY_MAX_COST)
            self.verify_tokens, self._verify_failed = 0, True

    def _verify_cost(self, start: int, repeat: int = 5) -> float:
        """Median time of a verification of `verify_tokens` tokens over a decode step's, both
        through `forward` as `generate()` calls them, at cache rows from `start` (junk after)."""
        device = self.tok_embeddings.weight.device
        rows = self.verify_tokens

        def median_time(idx: Tensor) -> float:
            positions = torch.arange(start, start + idx.shape[1], device=device)
            times = []
            for _ in range(repeat + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                self(idx, positions, kv_len=start + idx.shape[1])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            return sorted(times[1:])[repeat // 2]  # the first call is left out

        one = median_time(torch.zeros(1, 1, dtype=torch.long, device=device))
        return median_time(torch.zeros(1, rows, dtype=torch.long, device=device)) / max(one, 1e-9)

    def _capture(self, idx: Tensor, input_pos: Tensor) -> bool:
        """Make the CUDA graph of this prefill bucket, if it is one to graph; False if not. A
        capture that fails leaves prefill ungraphed (as fast as before), with a warning."""
        length = idx.shape[1]
        if not self._graph_prefill or length > self.graph_max:
            return False
        try:
            self._graphs[length] = _GraphedStep(self._prefill, self.model, idx, input_pos)
            return True
        except Exception:  # noqa: BLE001 - e.g. an op that reads the device; prefill still works
            log.warning("prefill of %d tokens could not be captured in a CUDA graph; it runs "
                        "without one", length, exc_info=True)
            self._graph_prefill = False
            return False

    def cold_buckets(self, max_prompt: int | None = None) -> list[int]:
        """Prefill buckets up to `max_prompt` (default: what the cache holds) not compiled yet."""
        if self._prefill is None:
            return []
        limit = min(max_prompt or self.max_seq_length, self.max_seq_length - 1)
        return [b for b in self.buckets if b <= limit and b not in self.warmed]

    def wanted_buckets(self) -> list[int]:
        """Cold buckets that a prompt has needed (and ran eagerly for), shortest first."""
        return [b for b in self.cold_buckets() if b in self.wanted]

    @torch.no_grad()
    def warm_prefill(self, length: int, start: int = 0) -> None:
        """Compile the prefill graph of `length` tokens (or load it from the compile cache) by
        running it at positions start .. start + length - 1, whose cache rows get junk."""
        device = self.tok_embeddings.weight.device
        idx = torch.zeros(1, length, dtype=torch.long, device=device)
        input_pos = torch.arange(start, start + length, device=device)
        if not self._capture(idx, input_pos):
            self._prefill(self.model, idx, input_pos)
        self.warmed.add(length)


def _raise_recompile_limit(limit: int = 64) -> None:
    """Dynamo keeps compiled variants per code object, shared by every model compiled in the
    process (bf16 and int8, each prefill bucket); past the default limit of 8 it would silently
    fall back to eager."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < limit:
            setattr(dynamo_config, name, limit)


def compile_model(
    model: nn.Module,
    *,
    cudagraphs: bool | None = None,
    compile_prefill: bool | None = None,
    buckets: Sequence[int] = DEFAULT_PREFILL_BUCKETS,
    sized: bool | None = None,
    kernels: bool | None = None,
    fused: bool = True,
    eager_graphs: bool | None = None,
    regional: bool = False,
) -> CompiledModel:
    """Wrap `model` (a `Transformer` with caches set up) in compiled steps.

    Defaults follow the device: CUDA gets CUDA graphs for decode and compiled, bucketed prefill
    (fixed shapes: attention reads the whole cache); other devices get a compiled decode step
    that reads the cache only up to the filled length (`sized`) and eager prefill. `kernels`
    (default: on CUDA) swaps in Quill's Triton decode kernels first (`use_triton_kernels`;
    `fused=False` keeps each layer's small ops unfused, for comparison).

    `eager_graphs` (default: on CUDA when every layer and the head came out fused,
    `fully_fused`) compiles nothing: decode and the prefill buckets up to EAGER_GRAPH_MAX are
    CUDA graphs of the eager model, longer prompts run eagerly (their time is in the matmuls).
    `regional` (sized steps only) compiles each layer on its own instead of the whole model: a
    fraction of the cold compile for a slower step (see `_regional`); `runtime.loading` picks it
    for a first start. Compilation itself happens on the first call of each shape; call `warmup()` to do it up
    front.
    """
    _raise_recompile_limit()
    device = model.tok_embeddings.weight.device
    on_cuda = device.type == "cuda"
    if on_cuda if kernels is None else kernels:
        from .fast_paths import use_triton_kernels

        use_triton_kernels(model, fused=fused)
    cudagraphs = on_cuda if cudagraphs is None else cudagraphs
    if eager_graphs is None:
        eager_graphs = cudagraphs and on_cuda and compile_prefill is not False and fully_fused(model)
    if eager_graphs:
        graphed = tuple(b for b in buckets if b <= EAGER_GRAPH_MAX)
        return CompiledModel(model, decode=_GraphedDecode(), prefill=_prefill, buckets=graphed,
                             graph_prefill=True, graph_max=EAGER_GRAPH_MAX, eager_steps=True,
                             verify=_verify)
    sized = (not cudagraphs and _accepts_kv_len(model)) if sized is None else sized
    if regional and sized:
        return _regional(model)
    compile_prefill = on_cuda if compile_prefill is None else compile_prefill
    mode = "reduce-overhead" if cudagraphs else None
    decode = torch.compile(_decode, mode=mode, fullgraph=True, dynamic=False)
    decode_upto = verify = None
    if sized:
        # kv_len changes every KV_STEP tokens: one graph with a symbolic length from the start
        # (dynamic=True; the size-1 dimensions of a decode step stay static). Left to automatic
        # dynamic shapes it compiled twice, a static length first, the first start's largest cost.
        decode_upto = torch.compile(_decode_upto, fullgraph=True, dynamic=True)
        verify = torch.compile(_verify_upto, fullgraph=True, dynamic=True)
        compile_prefill = False
    prefill = None
    if compile_prefill:
        # CUDA graphs only for the short buckets (see `_GraphedStep`): a graph per long
        # bucket would pin its activations, and there the launches are a small part.
        prefill = torch.compile(_prefill, fullgraph=True, dynamic=False)
    return CompiledModel(model, decode=decode, prefill=prefill, buckets=buckets, decode_upto=decode_upto,
                         graph_prefill=cudagraphs, verify=verify)


def _regional(model: nn.Module) -> CompiledModel:
    """Sized steps through the model with each layer and the head compiled on their own
    (`compile_model(regional=True)`). The layers share their code, so Dynamo and Inductor make
    one graph for all of them (per kind of call: one token, several), not one for the whole
    model: SmolLM2-135M float32-int4 on two cores compiled in about 10 s with an empty compile
    cache against 30 s for the whole-model graph, and decoded at 75 tok/s against 87 (the
    whole graph fuses across layers and calls one function a step, not 31). Multi-token calls
    (prefill, verification) run the compiled layers too."""
    for layer in model.layers:
        layer.compile(fullgraph=True, dynamic=True)
    model.head.compile(fullgraph=True, dynamic=True)
    return CompiledModel(model, decode=_decode, prefill=None, buckets=(), decode_upto=_decode_upto,
                         verify=_verify_upto, regional=True)


def fully_fused(model: nn.Module) -> bool:
    """Whether every layer and the head of `model` run their one-token step as Quill's fused
    kernels (`use_triton_kernels`), so that decode is those kernels and nothing else."""
    from .kernels.fused_decode import FusedDecodeBlock, FusedHead

    return (all(isinstance(layer, FusedDecodeBlock) for layer in model.layers)
            and isinstance(model.head, FusedHead))


def _accepts_kv_len(model: nn.Module) -> bool:
    import inspect

    return "kv_len" in inspect.signature(model.forward).parameters


@torch.no_grad()
def warmup(model: CompiledModel, *, max_prompt: int | None = None, log_fn=log.info) -> float:
    """Compile decode and every prefill bucket up to `max_prompt` now, and the prompt-lookup
    verification step when that is quick (see VERIFY_AT_LOAD_S); return seconds spent.

    Leaves junk in the KV cache: callers forget their cached sequence afterwards
    (`Engine.reset()`). Run it on the thread that will generate: CUDA-graph trees are kept per
    thread.
    """
    device = model.tok_embeddings.weight.device
    t0 = time.perf_counter()
    if model._prefill is None:
        # Eager prefill before decode. Per layer (`regional`) prefill runs the compiled layers:
        # a short and a long prompt now (the 4-bit kernel takes up to 64 rows; longer inputs
        # are another graph), else the first chat prompt compiled one in its own time.
        for n in (8, min(160, model.max_seq_length - 1)) if model.regional else (8,):
            idx = torch.zeros(1, n, dtype=torch.long, device=device)
            model(idx, torch.arange(n, device=device), last_only=True)
    # Graphs of the eager model take a fraction of a second each: all of them now.
    for n in model.cold_buckets(None if model.eager_steps else max_prompt):
        model.warm_prefill(n)
        made = "captured" if model.eager_steps else "compiled"
        log_fn(f"warm-up: prefill {n} tokens {made} after {time.perf_counter() - t0:.1f}s")
    if model.eager_steps:
        # Longer prompts run eagerly. The first run of a length sets up the cuBLAS and attention
        # kernels it picks (H200, Phi-3-mini int8: a first request of 1,536 tokens took 236 ms,
        # the same request later 162 ms, after a warm-up at 1,024 only): one run at every
        # multiple of EAGER_WARM_STEP, a few tenths of a second in all.
        for length in range(EAGER_WARM_STEP, model.max_seq_length, EAGER_WARM_STEP):
            model(torch.zeros(1, length, dtype=torch.long, device=device),
                  torch.arange(length, device=device), last_only=True, kv_len=length)
    token = torch.zeros(1, 1, dtype=torch.long, device=device)
    positions = [0, 1, 2]  # CUDA graph trees record on the second/third call
    if model.sized:  # a second cache length: the symbolic-length graph is compiled now too
        positions += [p for p in (KV_STEP, 2 * KV_STEP) if p < model.max_seq_length]
    for pos in positions:
        model(token, torch.tensor([pos], device=device))
    if model.eager_steps or model.regional or time.perf_counter() - t0 < VERIFY_AT_LOAD_S:
        model.warm_verify()
        if model.verify_tokens:
            log_fn(f"warm-up: prompt-lookup verification ready after {time.perf_counter() - t0:.1f}s")
    elif model.verify_pending:
        log_fn("warm-up: the prompt-lookup verification step is left to idle time (a cold compile)")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    model.compile_seconds = time.perf_counter() - t0
    made = "captured, nothing compiled" if model.eager_steps else "compiled"
    log_fn(f"warm-up: decode {made}; {model.compile_seconds:.1f}s in all")
    return model.compile_seconds


def compile_engine(engine, *, cache_dir: str | os.PathLike | None = None, warm: bool = True, **kw):
    """Compile an `Engine`'s model in place (see `compile_model`), warm it up, reset its cache."""
    if cache_dir is not None:
        configure_compile_cache(cache_dir)
    if not isinstance(engine.model, CompiledModel):
        engine.model = compile_model(engine.model, **kw)
    if warm:
        warmup(engine.model)
        engine.reset()
    return engine
