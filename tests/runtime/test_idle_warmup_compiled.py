"""Longer prompt lengths compile while the server is idle, not in a request's time: for real.

On CUDA `Engine.load` compiles decode and the shortest prefill bucket only (compiling every
bucket of a 7B model took minutes before the first answer); a prompt whose bucket is not
compiled yet runs eagerly, and the model host's worker compiles such a bucket, one that a prompt
has needed, each time it has been idle for a moment. Here the same machinery runs on the CPU: the
tiny GPT-2-vocabulary checkpoint of the generation tests, its prefill compiled by Inductor's C++
backend with buckets 16 and 64. Checked: a 38-token prompt is answered without compiling its
bucket and with the eager model's tokens; the idle warm-up compiles that bucket, keeps the cached
prefix, and afterwards the same lengths run compiled without recompiling; the worker thread does
the compile on its own after a quiet moment. The decisions alone (which bucket, when, after a
failure) are tested without compiling in tests/unit/test_idle_warmup.py.
"""

from __future__ import annotations

import threading

import pytest
import torch

from lsp_server.model_host import LoadedModel, ModelHost
from runtime.compile import CompiledModel, _decode, _prefill, warmup
from runtime.engine import Engine, GenerationConfig
from tests.runtime.test_generation import CODE, PROSE, tiny_checkpoint  # noqa: F401 - the fixture

GEN = GenerationConfig(max_new_tokens=6)


def lazy_engine(checkpoint_dir) -> Engine:
    """What `Engine.load` builds on CUDA, on the CPU: compiled bucketed prefill, the shortest
    bucket warm, the others left to `warm_next`. Decode stays eager (not what is tested)."""
    engine = Engine.load(checkpoint_dir, device="cpu", precision="float32", compile=False)
    prefill = torch.compile(_prefill, fullgraph=True, dynamic=False)
    engine.model = CompiledModel(engine.model, decode=_decode, prefill=prefill, buckets=(16, 64))
    warmup(engine.model, max_prompt=16, log_fn=lambda msg: None)
    engine.model.lazy_prefill = True
    engine.reset()
    return engine


def test_cold_bucket_runs_eagerly_until_idle_warmup_compiles_it(tiny_checkpoint):  # noqa: F811
    import torch._dynamo

    reference = Engine.load(tiny_checkpoint[0], device="cpu", precision="float32", compile=False)
    engine = lazy_engine(tiny_checkpoint[0])
    tok = engine.tokenizer
    prompt = tok.encode(PROSE)  # 38 tokens: bucket 64
    assert engine.model.warmed == {16} and engine.pending_warmup() == []

    first = engine.generate(prompt, GEN)
    assert first.token_ids == reference.generate(prompt, GEN).token_ids
    assert engine.model.warmed == {16}  # answered eagerly, nothing compiled in the request
    assert engine.pending_warmup() == [64]  # but noted for the idle time

    assert engine.warm_next() == 64
    assert engine.pending_warmup() == [] and engine.warm_next() is None
    follow = prompt + first.token_ids + tok.encode(CODE)[:5]
    with torch._dynamo.config.patch(error_on_recompile=True):
        second = engine.generate(follow, GEN)  # bucket 16 for the new tokens: compiled, no recompile
        longer = tok.encode(CODE + PROSE)[:50]
        third = engine.generate(longer, GEN)  # bucket 64: compiled while idle, no recompile
    # The warm-up ran on the cache's last rows: the prefix of the first request was kept (all
    # but its last generated token, which is never fed).
    assert second.reused_tokens == len(prompt) + len(first.token_ids) - 1
    assert second.token_ids == reference.generate(follow, GEN).token_ids
    assert third.token_ids == reference.generate(longer, GEN).token_ids


def test_model_host_compiles_needed_buckets_when_idle(tiny_checkpoint, monkeypatch):  # noqa: F811
    from lsp_server import model_host

    monkeypatch.setattr(model_host, "IDLE_WARM_S", 0.5)
    engine = lazy_engine(tiny_checkpoint[0])
    warmed = threading.Event()
    warm_next = engine.warm_next

    def warm_and_tell():  # the engine's own warm-up, then a signal that the worker ran it
        try:
            return warm_next()
        finally:
            warmed.set()

    engine.warm_next = warm_and_tell
    host = ModelHost()
    host.loaded, host.state = LoadedModel(engine, None, None), "ready"
    assert host.status()["warmup"] == {"compiled": [], "pending": []}
    prompt = engine.tokenizer.encode(PROSE)  # bucket 64, not compiled: runs eagerly
    host.submit("completion", lambda job: host.generate(job, prompt, GEN)).future.result(timeout=60)
    assert warmed.wait(300)  # a cold compile on a shared two-core machine
    host.submit("completion", lambda job: None).future.result(timeout=60)  # the worker is past it
    assert host.status()["warmup"] == {"compiled": [64], "pending": []}
    assert engine.model.warmed == {16, 64}
    # The host still takes work afterwards.
    result = host.submit("completion", lambda job: host.generate(job, engine.tokenizer.encode(PROSE)[:30], GEN))
    assert len(result.future.result(timeout=60).token_ids) == GEN.max_new_tokens


def test_verification_left_by_a_cold_load_is_made_while_idle(tiny_checkpoint, monkeypatch):  # noqa: F811
    """After a cold compile the load leaves the prompt-lookup verification step to idle time:
    until then completions decode one token at a time; `warm_next` makes it first, on the
    cache's last rows (the cached prefix stays), and drafts are verified afterwards with the
    eager model's tokens. (A random model rarely repeats its prompt, so every step drafts the
    last token again here: drafts to verify, mostly rejected.)"""
    from runtime import generate as generation
    from runtime.compile import VERIFY_ROWS, _decode_upto, _verify_upto

    monkeypatch.setattr(generation.PromptLookup, "draft", lambda self, n: self.ids[-1:] * n)
    reference = Engine.load(tiny_checkpoint[0], device="cpu", precision="float32", compile=False)
    engine = Engine.load(tiny_checkpoint[0], device="cpu", precision="float32", compile=False)
    engine.model = CompiledModel(engine.model, decode=_decode, prefill=None, buckets=(),
                                 decode_upto=_decode_upto, verify=_verify_upto)
    assert engine.pending_warmup() == ["verify"]
    prompt = engine.tokenizer.encode(CODE + CODE)
    lookup = GenerationConfig(max_new_tokens=12, prompt_lookup=True)
    first = engine.generate(prompt, lookup)
    assert first.draft_tokens == 0
    assert first.token_ids == reference.generate(prompt, GenerationConfig(max_new_tokens=12)).token_ids

    assert engine.warm_next() == "verify"
    assert engine.model.verify_tokens == VERIFY_ROWS and engine.pending_warmup() == []
    follow = prompt + first.token_ids + prompt[:20]
    second = engine.generate(follow, lookup)
    assert second.reused_tokens == len(prompt) + len(first.token_ids) - 1
    assert second.draft_tokens > 0
    assert second.token_ids == reference.generate(follow, GenerationConfig(max_new_tokens=12)).token_ids
