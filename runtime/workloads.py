"""The workloads an editor produces, and how the engine is timed on them.

Workloads (batch 1, greedy, fixed output length: stop tokens are ignored, as in gpt-fast):

    parity      5-token prompt, 200 new tokens (gpt-fast's published setup)
    prefill     2,048-token prompt, 1 new token (its time to first token is the prefill)
    completion  1,536-token prefix, 64 new tokens (an inline completion in a large file)
    typing      20 requests, each prompt 8 tokens longer than the last, 64 new tokens each;
                the engine's prefix reuse makes each keystroke cost only its new tokens
    chat        500-token prompt, 256 new tokens

Metrics per workload: time to first token (TTFT: a run with one new token), total time,
decode tok/s = (N - 1) / (total - TTFT), gpt-fast's tok/s = N / total (prefill included); for
typing, the p50/p90 latency of the requests after the first. Each run starts from an empty
cache (`Engine.reset()`), except within the typing replay. The peers (Hugging Face transformers,
llama.cpp) and result files live in the repository's `benchmarks/` scripts, which call
`run_workload` for Quill's own numbers; `quill bench` runs the same workloads on one model.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import QuillError


@dataclass(frozen=True)
class Workload:
    name: str
    prompt_tokens: int
    new_tokens: int
    requests: int = 1  # > 1: a typing replay
    step_tokens: int = 0  # prompt growth per request


WORKLOADS = {
    "parity": Workload("parity", 5, 200),
    "prefill": Workload("prefill", 2048, 1),  # time to first token = prefill of 2,048 tokens
    "completion": Workload("completion", 1536, 64),
    "typing": Workload("typing", 1536, 64, requests=20, step_tokens=8),
    "chat": Workload("chat", 500, 256),
}


def scaled(workload: Workload, factor: float) -> Workload:
    """The same workload with prompt and output lengths scaled (for `--tiny` smoke runs)."""
    return Workload(
        workload.name,
        max(2, int(workload.prompt_tokens * factor)),
        max(2, int(workload.new_tokens * factor)),
        workload.requests,
        max(1, int(workload.step_tokens * factor)) if workload.step_tokens else 0,
    )


def synthetic_tokens(n: int, vocab_size: int, seed: int = 0) -> list[int]:
    """n random token ids (ids 0-99 skipped: special tokens live there in most vocabularies)."""
    g = torch.Generator().manual_seed(seed)
    low = min(100, vocab_size // 2)
    return torch.randint(low, vocab_size, (n,), generator=g).tolist()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def single_request_metrics(first: list[float], total: list[float], new_tokens: int) -> dict:
    """Median TTFT and total over runs -> decode and end-to-end rates."""
    ttft, whole = statistics.median(first), statistics.median(total)
    decode_time = whole - ttft  # not positive only for noisy runs of very few tokens
    return {
        "ttft_s": ttft,
        "total_s": whole,
        "decode_tok_s": (new_tokens - 1) / decode_time if new_tokens > 1 and decode_time > 0 else None,
        "gptfast_tok_s": new_tokens / whole,
        "ttft_runs_s": first,
        "total_runs_s": total,
        "new_tokens": new_tokens,
    }


def typing_metrics(latencies: list[float], new_tokens: int) -> dict:
    rest = latencies[1:] or latencies
    return {
        "first_request_s": latencies[0],
        "p50_s": percentile(rest, 0.5),
        "p90_s": percentile(rest, 0.9),
        "max_s": max(rest),
        "latencies_s": latencies,
        "new_tokens": new_tokens,
    }


def run_workload(engine, workload: Workload, *, runs: int = 3, warmup: int = 1, seed: int = 0) -> dict:
    """Time `engine` (a `runtime.engine.Engine`) on one workload; stop tokens are ignored."""
    prompt_len = workload.prompt_tokens + workload.step_tokens * (workload.requests - 1)
    if prompt_len + workload.new_tokens > engine.max_seq_length:
        raise QuillError(
            f"workload {workload.name} needs {prompt_len + workload.new_tokens} positions but the "
            f"engine's cache holds {engine.max_seq_length}; load it with a larger max_seq_length."
        )
    tokens = synthetic_tokens(prompt_len, engine.config.vocab_size, seed)
    # A tokenizer-free view of the same model: the tokenizer's stop ids would end generation
    # early (fixed lengths make runs comparable), and text decoding is not what is timed here.
    engine = untokenized(engine)
    if workload.requests > 1:
        return _typing_replay(engine, workload, tokens, warmup)
    prompt = tokens[: workload.prompt_tokens]
    for _ in range(warmup):
        engine.reset()
        _generate(engine, prompt, workload.new_tokens)
    first, total = [], []
    for _ in range(runs):
        engine.reset()
        first.append(timed(lambda: _generate(engine, prompt, 1), engine.device)[0])
        engine.reset()
        total.append(timed(lambda: _generate(engine, prompt, workload.new_tokens), engine.device)[0])
    return single_request_metrics(first, total, workload.new_tokens)


def first_call(engine, workload: Workload, seed: int = 0) -> float:
    """Seconds for one request from an empty cache (what compiles on a fresh engine)."""
    tokens = synthetic_tokens(workload.prompt_tokens, engine.config.vocab_size, seed)
    engine = untokenized(engine)
    engine.reset()
    seconds = timed(lambda: _generate(engine, tokens, workload.new_tokens), engine.device)[0]
    engine.reset()
    return seconds


def _typing_replay(engine, workload: Workload, tokens: list[int], warmup: int) -> dict:
    """Requests whose prompts grow by `step_tokens`; the cache is kept between them."""
    for _ in range(warmup):
        engine.reset()
        _generate(engine, tokens[: workload.prompt_tokens], workload.new_tokens)
        _generate(engine, tokens[: workload.prompt_tokens + workload.step_tokens], workload.new_tokens)
    engine.reset()
    latencies = []
    for i in range(workload.requests):
        prompt = tokens[: workload.prompt_tokens + i * workload.step_tokens]
        latencies.append(timed(lambda: _generate(engine, prompt, workload.new_tokens), engine.device)[0])
    return typing_metrics(latencies, workload.new_tokens)


def _generate(engine, prompt: list[int], n: int):
    from .engine import GenerationConfig

    result = engine.generate(prompt, GenerationConfig(max_new_tokens=n))
    if len(result.token_ids) != n:
        raise QuillError(
            f"generation stopped after {len(result.token_ids)} of {n} tokens "
            f"({result.finish_reason}); benchmark numbers would not be comparable."
        )
    return result


def untokenized(engine):
    """An `Engine` over the same model and cache with no tokenizer (no stop ids, no text)."""
    from .devices import resolve_device
    from .engine import Engine

    if engine.tokenizer is None:
        return engine
    return Engine(engine.model, None, device=resolve_device(engine.device))
