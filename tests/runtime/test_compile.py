"""Compiled generation (`runtime/compile.py`) computes what the eager model computes.

A tiny seeded Llama-style model (GQA, tied embeddings) runs through `generate()` eagerly and
through `CompiledModel`: greedy tokens must be equal, also when prefix reuse prefills only a few
new tokens and when prompt lengths are padded up to buckets. On the CPU the decode step is
compiled by Inductor's C++ backend; the CUDA-graph variant runs only where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

from runtime.compile import (
    CompiledModel,
    _decode,
    _prefill,
    bucket_length,
    compile_model,
    configure_compile_cache,
    pad_prompt,
    warmup,
)
from runtime.config import ModelConfig
from runtime.devices import resolve_device
from runtime.loading import build_model
from runtime.generate import generate
from runtime.sampling import Sampler
from runtime.weight_map import hf_to_native
from tests.runtime.tiny_models import tiny_hf_model


def tiny_model(device: str = "cpu", dtype=torch.float32, max_seq_length: int = 128):
    hf, cfg = tiny_hf_model("smollm2", seed=3)
    config = ModelConfig.from_hf_config(cfg)
    dev = resolve_device(device)
    tensors = {k: v.to(dev.torch_device, dtype) for k, v in hf_to_native(hf.state_dict(), config).items()}
    return build_model(config, tensors, dev, max_seq_length=max_seq_length)


def greedy(model, prompt, n=12, start_pos=0):
    out = generate(model, prompt, start_pos=start_pos, max_new_tokens=n, sampler=Sampler(0.0))
    return out.token_ids


PROMPT = [5, 17, 99, 3, 250, 41, 7, 7, 8, 120, 64, 1, 33]


def test_bucket_length_picks_smallest_fitting_bucket():
    assert bucket_length(5, (16, 64), 128) == 16
    assert bucket_length(16, (16, 64), 128) == 16
    assert bucket_length(17, (16, 64), 128) == 64
    assert bucket_length(17, (16, 64), 40) == 17  # 64 would run past the cache
    assert bucket_length(100, (16, 64), 128) == 100


def test_pad_prompt_keeps_last_token_last_and_pads_after_the_prompt():
    idx = torch.tensor([[10, 11, 12]])
    pos = torch.tensor([4, 5, 6])
    idx_p, pos_p = pad_prompt(idx, pos, 6)
    assert idx_p.tolist() == [[10, 11, 0, 0, 0, 12]]
    assert pos_p.tolist() == [4, 5, 7, 8, 9, 6]


@torch.no_grad()
def test_padded_prefill_gives_the_same_logits_and_continuation():
    model = tiny_model()
    ref_logits = model(torch.tensor([PROMPT]), torch.arange(len(PROMPT)), last_only=True)
    ref_tokens = greedy(model, PROMPT)
    # Uncompiled steps: this checks the padding logic alone.
    wrapped = CompiledModel(model, decode=_decode, prefill=_prefill, buckets=(16, 64))
    logits = wrapped(torch.tensor([PROMPT]), torch.arange(len(PROMPT)), last_only=True)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert greedy(wrapped, PROMPT) == ref_tokens
    # Prefix reuse: the first 9 tokens stay cached, 4 are prefilled (padded to 16).
    assert greedy(wrapped, PROMPT, start_pos=9) == ref_tokens


@torch.no_grad()
def test_compiled_decode_on_cpu_matches_eager_without_recompiling():
    """Off CUDA the compiled step reads the cache up to the next multiple of KV_STEP; 80 new
    tokens cross two such steps, which must neither change tokens nor recompile."""
    import torch._dynamo

    model = tiny_model(max_seq_length=256)
    ref = greedy(model, PROMPT, n=80)
    ref_longer = greedy(model, PROMPT + [9, 9, 31])
    compiled = compile_model(model)
    assert compiled.sized
    warmup(compiled, log_fn=lambda msg: None)
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert greedy(compiled, PROMPT, n=80) == ref
        assert greedy(compiled, PROMPT + [9, 9, 31], start_pos=len(PROMPT)) == ref_longer


@torch.no_grad()
def test_compiled_bucketed_prefill_matches_eager():
    """The fixed-shape path (CUDA's; forced here) pads prompts to buckets and reads the whole
    cache; after warm-up nothing recompiles."""
    import torch._dynamo

    model = tiny_model()
    ref = greedy(model, PROMPT)
    ref_longer = greedy(model, PROMPT + [9, 9, 31])
    compiled = compile_model(model, compile_prefill=True, buckets=(16,), sized=False)  # CUDA's way
    warmup(compiled, log_fn=lambda msg: None)
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert greedy(compiled, PROMPT) == ref
        assert greedy(compiled, PROMPT + [9, 9, 31], start_pos=len(PROMPT)) == ref_longer


def test_configure_compile_cache_points_inductor_and_triton_at_the_folder(tmp_path, monkeypatch):
    import os

    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Inductor puts its default there itself (importing its config does), which is not a choice.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    monkeypatch.setenv("TRITON_CACHE_DIR", "")  # so that teardown restores whatever was there,
    monkeypatch.delenv("TRITON_CACHE_DIR")  # the value set below included
    path = configure_compile_cache(tmp_path)
    assert path.is_dir() and path.is_relative_to(tmp_path / "compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(path)
    assert os.environ["TRITON_CACHE_DIR"] == str(path / "triton")
    assert inductor_config.fx_graph_cache
    # Another folder later in the same process (another model's settings) moves both.
    again = configure_compile_cache(tmp_path / "other")
    assert os.environ["TRITON_CACHE_DIR"] == str(again / "triton")


def test_configure_compile_cache_keeps_the_users_folders(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "my-triton"))
    assert configure_compile_cache(tmp_path / "quill") == tmp_path / "mine"
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "my-triton")


@pytest.mark.gpu
@torch.no_grad()
def test_cuda_graph_decode_matches_eager_and_does_not_recompile():
    import torch._dynamo

    model = tiny_model("cuda", torch.float32, max_seq_length=256)
    prompts = [PROMPT, PROMPT[:5], PROMPT * 4]
    refs = [greedy(model, p) for p in prompts]
    longer = PROMPT * 4 + [9, 9, 31]
    ref_longer = greedy(model, longer)
    compiled = compile_model(model, buckets=(16, 64, 128), eager_graphs=False)
    warmup(compiled, log_fn=lambda msg: None)
    assert sorted(compiled._graphs) == [16, 64]  # the short buckets replay CUDA graphs
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert [greedy(compiled, p) for p in prompts] == refs
        # Prefix reuse: three new tokens through the 16-token graph, after the cache rows that
        # the 64-token graph wrote.
        greedy(compiled, PROMPT * 4)
        assert greedy(compiled, longer, start_pos=len(PROMPT) * 4) == ref_longer


@pytest.mark.gpu
@torch.no_grad()
def test_eager_graphs_match_eager_and_compile_nothing():
    """A model whose every layer and head run the fused kernels: decode and the prefill buckets
    are CUDA graphs of the eager model, longer prompts eager, and torch.compile never runs."""
    from torch._dynamo.utils import counters

    from runtime.compile import EAGER_GRAPH_MAX, fully_fused

    model = tiny_model("cuda", torch.float32, max_seq_length=512)
    prompts = [PROMPT, PROMPT[:5], PROMPT * 4, PROMPT * 25]  # the last one: longer than every graph
    refs = [greedy(model, p) for p in prompts]
    longer = PROMPT * 4 + [9, 9, 31]
    ref_longer = greedy(model, longer)
    frames = counters["stats"]["unique_graphs"]
    graphed = compile_model(model, buckets=(16, 64, 128, 256, 512))
    assert fully_fused(model) and graphed.eager_steps
    assert graphed.buckets == tuple(b for b in (16, 64, 128, 256) if b <= EAGER_GRAPH_MAX)
    warmup(graphed, max_prompt=16, log_fn=lambda msg: None)
    assert sorted(graphed._graphs) == list(graphed.buckets)  # every bucket, whatever max_prompt
    assert graphed.cold_buckets() == [] and graphed._decode.graph is not None
    assert [greedy(graphed, p) for p in prompts] == refs
    greedy(graphed, PROMPT * 4)
    assert greedy(graphed, longer, start_pos=len(PROMPT) * 4) == ref_longer  # prefix reuse
    assert counters["stats"]["unique_graphs"] == frames  # nothing went through Dynamo
