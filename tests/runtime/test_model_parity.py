"""The runtime's model equals Hugging Face transformers on tiny random models of every family.

For each architecture (tiny_models.TINY_CONFIGS) a seeded random transformers model is converted
with `hf_to_native` and loaded into `model.Transformer`; on CPU in float32:
  - full-forward logits agree within 1e-4 (max abs);
  - 32 greedy tokens equal transformers' `generate(do_sample=False)`;
  - every KV-cached decode step equals a full forward pass over the sequence so far (ours and
    transformers'), and a prefill split in chunks (what prefix reuse does) equals one prefill.
Prompts are longer than the sliding windows of the Mistral and Phi-3 configs.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from runtime.config import ModelConfig
from runtime.generate import decode_one_token, prefill
from runtime.model import Transformer
from runtime.weight_map import hf_to_native, native_names

from .tiny_models import TINY_CONFIGS, tiny_hf_model

PROMPT_LEN = 24
NEW_TOKENS = 32
ATOL = 1e-4


def _prompt(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 256, (1, PROMPT_LEN), generator=g)  # [1, S]


def _native(hf_model, config: ModelConfig, max_seq_length: int) -> Transformer:
    model = Transformer(config).eval()
    model.load_state_dict(hf_to_native(hf_model.state_dict(), config), strict=True)
    model.setup_caches(1, max_seq_length)
    return model


@pytest.fixture(scope="module", params=list(TINY_CONFIGS))
def pair(request):
    hf_model, cfg = tiny_hf_model(request.param)
    config = ModelConfig.from_hf_config(cfg)
    return request.param, hf_model, config, _native(hf_model, config, PROMPT_LEN + NEW_TOKENS + 8)


@torch.no_grad()
def test_full_forward_logits_match(pair):
    name, hf_model, config, model = pair
    ids = _prompt()
    ref = hf_model(ids).logits  # [1, S, V]
    ours = model(ids, torch.arange(PROMPT_LEN))
    diff = (ours - ref).abs().max().item()
    print(f"{name}: full-forward max |logit diff| = {diff:.2e} (logits up to {ref.abs().max():.2f})")
    assert diff < ATOL


@torch.no_grad()
def test_greedy_tokens_match_transformers(pair):
    name, hf_model, config, model = pair
    ids = _prompt(2)
    hf_model.generation_config.eos_token_id = None  # no early stop: compare all 32 tokens
    hf_model.generation_config.pad_token_id = 0
    ref = hf_model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, PROMPT_LEN:].tolist()

    logits = prefill(model, ids, torch.arange(PROMPT_LEN))
    ours = []
    for pos in range(PROMPT_LEN, PROMPT_LEN + NEW_TOKENS):
        token = logits.argmax(-1)  # [1]
        ours.append(int(token))
        logits = decode_one_token(model, token.view(1, 1), torch.tensor([pos]))
    print(f"{name}: greedy {ours[:8]}... ({len(set(ours))} distinct of {NEW_TOKENS})")
    assert len(ref) == NEW_TOKENS
    assert ours == ref


@torch.no_grad()
def test_cached_decode_equals_full_forward(pair):
    name, hf_model, config, model = pair
    ids = _prompt(3)
    full_seq = torch.cat([ids, torch.randint(3, 256, (1, NEW_TOKENS), generator=torch.Generator().manual_seed(4))], 1)
    hf_full = hf_model(full_seq).logits[0]  # [S_total, V]
    fresh = _native(hf_model, config, full_seq.shape[1])
    ours_full = fresh(full_seq, torch.arange(full_seq.shape[1]))[0]

    step_logits = [prefill(model, ids, torch.arange(PROMPT_LEN))[0]]
    for pos in range(PROMPT_LEN, full_seq.shape[1] - 1):
        step_logits.append(decode_one_token(model, full_seq[:, pos : pos + 1], torch.tensor([pos]))[0])
    steps = torch.stack(step_logits)  # logits for positions PROMPT_LEN-1 .. S_total-2
    against_ours = (steps - ours_full[PROMPT_LEN - 1 : -1]).abs().max().item()
    against_hf = (steps - hf_full[PROMPT_LEN - 1 : -1]).abs().max().item()
    print(f"{name}: {len(step_logits)} cached steps, max diff vs own full pass {against_ours:.2e}, vs HF {against_hf:.2e}")
    assert against_ours < ATOL and against_hf < ATOL


@torch.no_grad()
def test_chunked_prefill_equals_single_prefill(pair):
    """Prefix reuse prefills a suffix at positions > 0 on top of an existing cache."""
    name, hf_model, config, model = pair
    ids = _prompt(5)
    whole = prefill(model, ids, torch.arange(PROMPT_LEN))
    model(ids[:, :10], torch.arange(10))
    # Stale keys from an unrelated longer sequence must not leak in after a rewind.
    model(torch.randint(3, 256, (1, 20)), torch.arange(10, 30))
    rest = prefill(model, ids[:, 10:], torch.arange(10, PROMPT_LEN))
    assert (whole - rest).abs().max().item() < ATOL


FEATURES = {
    "mistral": ("sliding window", lambda c: dataclasses.replace(c, layer_windows=(None,) * c.n_layer)),
    "phi3": ("sliding window", lambda c: dataclasses.replace(c, layer_windows=(None,) * c.n_layer)),
    "llama3.1": ("llama3 rope scaling", lambda c: dataclasses.replace(c, rope_scaling=())),
    "phi2": ("partial rotary", lambda c: dataclasses.replace(c, rope_dim=c.head_dim)),
}


@pytest.mark.parametrize("name", list(FEATURES))
@torch.no_grad()
def test_config_feature_changes_the_result(name):
    """Each feature is real in its tiny config: dropping it moves the logits far from transformers'."""
    feature, drop = FEATURES[name]
    hf_model, cfg = tiny_hf_model(name)
    config = ModelConfig.from_hf_config(cfg)
    ids = _prompt()
    ref = hf_model(ids).logits
    with_it = _native(hf_model, config, PROMPT_LEN)(ids, torch.arange(PROMPT_LEN))
    without = _native(hf_model, drop(config), PROMPT_LEN)(ids, torch.arange(PROMPT_LEN))
    gap = (without - ref).abs().max().item()
    print(f"{name}: without {feature} max |logit diff| = {gap:.2e}")
    assert (with_it - ref).abs().max().item() < ATOL
    assert gap > 1e-2


def test_transformers_sdpa_also_honours_the_window():
    """transformers 5 applies Mistral's window with eager and with SDPA attention alike."""
    eager, _ = tiny_hf_model("mistral", attn_implementation="eager")
    sdpa, _ = tiny_hf_model("mistral", attn_implementation="sdpa")
    ids = _prompt()
    with torch.no_grad():
        assert (eager(ids).logits - sdpa(ids).logits).abs().max().item() < ATOL


def test_config_features_are_exercised():
    configs = {name: ModelConfig.from_hf_config(tiny_hf_model(name)[1]) for name in TINY_CONFIGS}
    assert configs["llama2"].n_local_heads == configs["llama2"].n_head
    assert configs["llama3.1"].n_local_heads < configs["llama3.1"].n_head
    assert configs["llama3.1"].rope_type == "llama3" and configs["llama3.1"].rope_base == 500000.0
    assert configs["mistral"].layer_windows == (8, 8)
    assert configs["smollm2"].tie_word_embeddings and "output.weight" not in native_names(configs["smollm2"])
    assert configs["qwen2"].qkv_bias and not configs["qwen2"].out_bias and configs["qwen2"].tie_word_embeddings
    assert configs["phi2"].rope_dim == 8 and configs["phi2"].head_dim == 20
    assert configs["phi2"].family == "phi" and configs["phi2"].output_bias
    assert configs["phi3"].family == "phi3"
