"""A first start on a CPU compiles per layer; the whole-model graph is compiled for the next one.

`compile_and_warm` with a graph key compiles each layer on its own while the compile cache has
no note of the whole graph (`runtime/whole_graph_cache.py`), and the whole graph once it has;
`python -m runtime.precompile`, which the model host starts in the background
(`lsp_server/background_compile.py`), pauses and stops, compiles it and writes the note, and
the host then switches its engine to the whole graph. Each compiled model gives the eager
model's tokens. The tiny GPT-2-vocabulary checkpoint of the generation tests, float32, with an
empty compile cache of the test's own.
"""

from __future__ import annotations

import sys
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

    # The per-layer engine of this start takes the whole graph in place (the server does when
    # its background compile has ended).
    first.graph_key = key
    assert first.adopt_whole_graph() and not first.model.regional
    assert first.generate(prompt, GEN).token_ids == want
    assert not first.adopt_whole_graph()  # once


def test_background_compile_runs_and_stops(tiny_checkpoint, empty_compile_cache, monkeypatch):  # noqa: F811
    """The child the model host starts after a per-layer load: off with the variable, not for a
    whole-graph load, not where a second copy of the weights would not fit, paused while the
    host works, stopped (paused or not) when another model loads."""
    from lsp_server.background_compile import ENV, BackgroundCompile

    engine = SimpleNamespace(model=SimpleNamespace(regional=True), checkpoint_dir=tiny_checkpoint[0],
                             dtype="float32", max_seq_length=512)
    runner = BackgroundCompile()
    monkeypatch.setenv(ENV, "0")
    assert not runner.start(engine) and runner.state is None  # turned off
    monkeypatch.setenv(ENV, "1")
    assert not runner.start(SimpleNamespace(model=SimpleNamespace(regional=False)))  # whole already
    from lsp_server import background_compile

    with monkeypatch.context() as short:
        short.setattr(background_compile, "_available_memory", lambda: 1000)
        short.setattr(background_compile, "_weight_bytes", lambda model: 600)
        assert not runner.start(engine)  # a second copy of the weights would not fit
    assert runner.start(engine) and runner.state == "running"
    runner.pause()  # the model host is working
    assert runner.paused and runner.state == "running"
    runner.stop()  # another model is loaded: the child goes, paused or not
    assert runner.state is None and not runner.paused


def test_model_host_switches_to_the_whole_graph_when_the_child_ends(tiny_checkpoint, empty_compile_cache,  # noqa: F811
                                                                      monkeypatch):
    """A per-layer load: the host starts the child, lets it run while idle, and once it has
    ended loads the whole-model graph in place; answers keep the eager model's tokens."""
    from lsp_server import model_host
    from lsp_server.background_compile import ENV
    from lsp_server.model_host import LoadedModel, ModelHost

    monkeypatch.setenv(ENV, "1")
    monkeypatch.setattr(model_host, "IDLE_WARM_S", 0.5)
    reference = eager(tiny_checkpoint[0])
    prompt = reference.tokenizer.encode(CODE)
    want = reference.generate(prompt, GenerationConfig(max_new_tokens=8)).token_ids
    engine = eager(tiny_checkpoint[0])
    engine.graph_key = key_of(engine)
    engine.model = compile_and_warm(engine.model, lambda *a: None, engine.graph_key)
    assert engine.model.regional
    host = ModelHost()
    host.loaded, host.state = LoadedModel(engine, None, None), "ready"
    assert host.background_compile.start(engine)
    assert host.status()["compiled"] == "per-layer" and host.status()["background_compile"] == "running"

    def answer():
        return host.submit("completion", lambda job: host.generate(job, prompt, GEN)).future.result(timeout=120)

    assert answer().token_ids == want  # served while the child compiles
    deadline = time.monotonic() + 600
    while engine.model.regional and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not engine.model.regional and host.status()["compiled"] == "whole"
    assert host.status()["background_compile"] == "finished"
    assert answer().token_ids == want


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_paused_background_compile_ends_with_a_server_that_dies(tiny_checkpoint, empty_compile_cache):  # noqa: F811
    """A server killed while its background compile is paused (SIGSTOP) leaves no stopped
    process behind (on Linux the kernel kills the child with its parent)."""
    import os
    import subprocess

    server = subprocess.run([sys.executable, "-c", f"""
import os, sys, time
from types import SimpleNamespace
os.environ["QUILL_BACKGROUND_COMPILE"] = "1"
from lsp_server.background_compile import BackgroundCompile
runner = BackgroundCompile()
engine = SimpleNamespace(model=SimpleNamespace(regional=True), checkpoint_dir={str(tiny_checkpoint[0])!r},
                         dtype="float32", max_seq_length=512)
assert runner.start(engine)
time.sleep(2)
runner.pause()
print(runner.proc.pid, flush=True)
os._exit(0)  # no atexit, no cleanup: as a killed server
"""], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=120)
    assert server.returncode == 0
    child = int(server.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, 9)
        raise AssertionError("the paused child outlived its server")
