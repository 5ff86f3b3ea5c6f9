"""A first start on a CPU compiles per layer; the whole-model graph is compiled for the next one.

`compile_and_warm` with a graph key compiles each layer on its own while the compile cache has
no note of the whole graph (`runtime/whole_graph_cache.py`), and the whole graph once it has;
`python -m runtime.precompile`, which the model host starts in the background
(`lsp_server/background_compile.py`) and stops, compiles it and writes the note. Each compiled model gives the eager
model's tokens. The tiny GPT-2-vocabulary checkpoint of the generation tests, float32, with an
empty compile cache of the test's own.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from runtime import whole_graph_cache
from runtime.engine import Engine, GenerationConfig
from runtime.loading import compile_and_warm, cpu_kernel_path
from tests.runtime.test_generation import CODE, tiny_checkpoint  # noqa: F401 - the fixture

GEN = GenerationConfig(max_new_tokens=8, prompt_lookup=True)


@pytest.fixture
def empty_compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    return tmp_path / "inductor"


def eager(checkpoint_dir) -> Engine:
    return Engine.load(checkpoint_dir, device="cpu", precision="float32", compile=False)


def key_of(engine: Engine) -> str:
    return whole_graph_cache.graph_key(engine.manifest.config, None, cpu_kernel_path(engine.model),
                                       engine.max_seq_length)


def test_per_layer_until_the_whole_graph_is_noted(tiny_checkpoint, empty_compile_cache):  # noqa: F811
    reference = eager(tiny_checkpoint[0])
    prompt = reference.tokenizer.encode(CODE)
    want = reference.generate(prompt, GenerationConfig(max_new_tokens=8)).token_ids
    key = key_of(reference)
    assert not whole_graph_cache.is_cached(key)

    first = eager(tiny_checkpoint[0])
    first.model = compile_and_warm(first.model, lambda *a: None, key)
    assert first.model.regional and not whole_graph_cache.is_cached(key)
    assert first.generate(prompt, GEN).token_ids == want

    whole = eager(tiny_checkpoint[0])
    whole.model = compile_and_warm(whole.model, lambda *a: None, key, whole=True)
    assert not whole.model.regional and whole_graph_cache.is_cached(key)
    assert whole.generate(prompt, GEN).token_ids == want

    later = eager(tiny_checkpoint[0])
    later.model = compile_and_warm(later.model, lambda *a: None, key)
    assert not later.model.regional  # the note says the cache holds the whole graph
    assert later.generate(prompt, GEN).token_ids == want


def test_background_compile_runs_and_stops(tiny_checkpoint, empty_compile_cache, monkeypatch):  # noqa: F811
    """The child the model host starts after a per-layer load: off with the variable, not for a
    whole-graph load, stopped when another model loads, and otherwise it writes the note."""
    from lsp_server.background_compile import ENV, BackgroundCompile

    engine = SimpleNamespace(model=SimpleNamespace(regional=True), checkpoint_dir=tiny_checkpoint[0],
                             dtype="float32", max_seq_length=512)
    runner = BackgroundCompile()
    monkeypatch.setenv(ENV, "0")
    assert not runner.start(engine) and runner.state is None  # turned off
    monkeypatch.setenv(ENV, "1")
    assert not runner.start(SimpleNamespace(model=SimpleNamespace(regional=False)))  # whole already
    assert runner.start(engine) and runner.state == "running"
    runner.pause()  # the model host is working
    assert runner.paused and runner.state == "running"
    runner.stop()  # another model is loaded: the child goes, paused or not
    assert runner.state is None and not runner.paused
    assert runner.start(engine)
    runner.pause()
    time.sleep(1.0)
    assert runner.state == "running"  # paused, not finished
    runner.resume()
    deadline = time.monotonic() + 600
    while runner.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert runner.state == "finished"
    reference = eager(tiny_checkpoint[0])
    assert whole_graph_cache.is_cached(whole_graph_cache.graph_key(
        reference.manifest.config, None, cpu_kernel_path(reference.model), 512))
