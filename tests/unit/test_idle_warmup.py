"""Which prefill buckets get compiled, and when: the idle warm-up's decisions, with nothing compiled.

On CUDA `Engine.load` compiles decode and the shortest prefill bucket only; a prompt whose bucket
is cold runs eagerly and is noted, and the model host's worker has the engine compile such a
bucket once the queue has been quiet for `IDLE_WARM_S`. Here the wrapper (`CompiledModel`), the
engine and the host are the real ones around a tiny randomly initialised model built in memory
(no checkpoint, no weights file), and the "compiled" prefill is the plain `_prefill` step seen
through a recorder, so the test sees which prompts went through it. Checked: a cold bucket runs
eagerly with the eager model's tokens and becomes pending; `warm_next` takes the shortest
pending bucket, keeps the cached prefix, and afterwards that bucket goes through the prefill
step; the host warms only after a quiet moment, never ahead of queued work, reports it in its
status, and stops trying after a failure. Compiling for real (no recompiles afterwards) is
tests/runtime/test_idle_warmup_compiled.py's part.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from lsp_server import model_host
from lsp_server.model_host import LoadedModel, ModelHost
from runtime.compile import CompiledModel, _decode, _prefill, warmup
from runtime.config import ModelConfig
from runtime.devices import resolve_device
from runtime.engine import Engine, GenerationConfig
from runtime.model import Transformer
from runtime.tokenizer.base import Tokenizer
from runtime.tokenizer.bpe import ByteLevelBPE, bytes_to_unicode
from runtime.tokenizer.pretokenizers import GPT2_PATTERN

GEN = GenerationConfig(max_new_tokens=6)
BUCKETS = (16, 64)
WAIT_S = 60.0  # the bound on each awaited outcome; the work itself takes milliseconds
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
}


def byte_tokenizer() -> Tokenizer:
    """Byte b is token b: any text encodes to as many tokens as it has bytes."""
    alphabet = bytes_to_unicode()
    codec = ByteLevelBPE({alphabet[b]: b for b in range(256)}, [], (GPT2_PATTERN,))
    return Tokenizer(codec, [], bos_id=None, eos_id=None, add_bos=False)


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_hf_config(CONFIG)).eval().requires_grad_(False)
    model.setup_caches(max_batch_size=1, max_seq_length=CONFIG["max_position_embeddings"])
    return model


@pytest.fixture
def reference(model) -> Engine:
    """The same weights without the wrapper (its own KV cache)."""
    return Engine(copy.deepcopy(model), byte_tokenizer(), device=resolve_device("cpu"))


class PrefillRecorder:
    """The plain prefill step, noting the length of every prompt it is given."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, model, idx, input_pos):
        self.lengths.append(idx.shape[1])
        return _prefill(model, idx, input_pos)


def lazy_engine(model, recorder: PrefillRecorder) -> Engine:
    """What `Engine.load` builds on CUDA: bucketed prefill with the shortest bucket warm and the
    others left to `warm_next`."""
    wrapped = CompiledModel(model, decode=_decode, prefill=recorder, buckets=BUCKETS)
    warmup(wrapped, max_prompt=BUCKETS[0], log_fn=lambda msg: None)
    wrapped.lazy_prefill = True
    engine = Engine(wrapped, byte_tokenizer(), device=resolve_device("cpu"))
    engine.reset()
    recorder.lengths.clear()
    return engine


def prompt(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, CONFIG["vocab_size"], (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_a_cold_bucket_runs_eagerly_until_warm_next_compiles_it(model, reference):
    recorder = PrefillRecorder()
    engine = lazy_engine(model, recorder)
    assert engine.model.warmed == {16} and engine.pending_warmup() == [] and engine.warm_next() is None

    first_prompt = prompt(38)  # bucket 64
    first = engine.generate(first_prompt, GEN)
    assert first.token_ids == reference.generate(first_prompt, GEN).token_ids
    assert recorder.lengths == []  # answered eagerly: the cold bucket was not built in the request
    assert engine.model.warmed == {16} and engine.pending_warmup() == [64]

    assert engine.warm_next() == 64
    assert recorder.lengths == [64] and engine.model.warmed == {16, 64}
    assert engine.pending_warmup() == [] and engine.warm_next() is None

    # The warm-up ran on the cache's last rows: the first request's prefix is kept (all but its
    # last generated token, which is never fed), and the new tokens use bucket 16.
    follow = first_prompt + first.token_ids + prompt(5, seed=2)
    second = engine.generate(follow, GEN)
    assert second.reused_tokens == len(first_prompt) + len(first.token_ids) - 1
    assert second.token_ids == reference.generate(follow, GEN).token_ids
    engine.reset()
    longer = prompt(50, seed=3)
    third = engine.generate(longer, GEN)
    assert third.token_ids == reference.generate(longer, GEN).token_ids
    assert recorder.lengths == [64, 16, 64]  # both prompts went through the warmed buckets


def test_a_prompt_longer_than_every_bucket_is_never_pending(model):
    engine = lazy_engine(model, PrefillRecorder())
    engine.generate(prompt(100), GenerationConfig(max_new_tokens=2))  # no bucket fits: eager
    assert engine.pending_warmup() == []


def idle_host(engine: Engine) -> tuple[ModelHost, threading.Event]:
    """A ready host around `engine`, and an event set each time its worker has called
    `engine.warm_next` (the engine's own method, called through)."""
    warmed = threading.Event()
    original = engine.warm_next

    def warm_next():
        try:
            return original()
        finally:
            warmed.set()

    engine.warm_next = warm_next
    host = ModelHost()
    host.loaded, host.state = LoadedModel(engine, None, None), "ready"
    return host, warmed


def after_queued_work(host: ModelHost) -> None:
    """Return once the worker has finished what it was doing and taken the next job."""
    host.submit("completion", lambda job: None).future.result(timeout=WAIT_S)


def test_the_host_compiles_a_needed_bucket_once_it_has_been_idle(model, monkeypatch):
    monkeypatch.setattr(model_host, "IDLE_WARM_S", 0.01)
    engine = lazy_engine(model, PrefillRecorder())
    host, warmed = idle_host(engine)
    assert host.status()["warmup"] == {"compiled": [], "pending": []}
    job = host.submit("completion", lambda job: host.generate(job, prompt(38), GEN))
    assert len(job.future.result(timeout=WAIT_S).token_ids) == GEN.max_new_tokens
    assert warmed.wait(WAIT_S)
    after_queued_work(host)
    assert host.status()["warmup"] == {"compiled": [64], "pending": []}
    assert engine.model.warmed == {16, 64}
    # The host still takes work afterwards, through the warmed bucket.
    result = host.submit("completion", lambda job: host.generate(job, prompt(30, seed=4), GEN))
    assert len(result.future.result(timeout=WAIT_S).token_ids) == GEN.max_new_tokens


def test_queued_work_goes_before_the_warm_up(model, monkeypatch):
    monkeypatch.setattr(model_host, "IDLE_WARM_S", 600.0)  # never reached while the test runs
    engine = lazy_engine(model, PrefillRecorder())
    host, warmed = idle_host(engine)
    first = host.submit("completion", lambda job: host.generate(job, prompt(38), GEN))
    second = host.submit("completion", lambda job: engine.pending_warmup())
    assert second.future.result(timeout=WAIT_S) == [64]  # needed by the first, not yet compiled
    assert first.future.done() and not warmed.is_set()
    after_queued_work(host)
    assert host.status()["warmup"] == {"compiled": [], "pending": [64]}
    assert not warmed.is_set() and engine.model.warmed == {16}


def test_a_failed_warm_up_is_not_retried_and_prompts_still_run(model, monkeypatch):
    monkeypatch.setattr(model_host, "IDLE_WARM_S", 0.01)
    engine = lazy_engine(model, PrefillRecorder())
    calls = []

    def failing_warm_next():
        calls.append(1)
        raise RuntimeError("the compiler failed")

    engine.warm_next = failing_warm_next
    host, warmed = idle_host(engine)
    host.submit("completion", lambda job: host.generate(job, prompt(38), GEN)).future.result(timeout=WAIT_S)
    assert warmed.wait(WAIT_S)
    after_queued_work(host)
    assert host.status()["warmup"] == {"compiled": [], "pending": []}
    again = host.submit("completion", lambda job: host.generate(job, prompt(40, seed=5), GEN))
    assert len(again.future.result(timeout=WAIT_S).token_ids) == GEN.max_new_tokens
    after_queued_work(host)
    assert calls == [1]  # nothing pending any more, so idle time does not try again
