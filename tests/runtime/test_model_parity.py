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

    for static in (True, False):  # whole static cache under a mask, or only its filled part
        kv = (lambda end: None) if static else (lambda end: end)
        step_logits = [prefill(model, ids, torch.arange(PROMPT_LEN), kv(PROMPT_LEN))[0]]
        for pos in range(PROMPT_LEN, full_seq.shape[1] - 1):
            token = full_seq[:, pos : pos + 1]
            step_logits.append(decode_one_token(model, token, torch.tensor([pos]), kv(pos + 1))[0])
        steps = torch.stack(step_logits)  # logits for positions PROMPT_LEN-1 .. S_total-2
        against_ours = (steps - ours_full[PROMPT_LEN - 1 : -1]).abs().max().item()
        against_hf = (steps - hf_full[PROMPT_LEN - 1 : -1]).abs().max().item()
        print(f"{name}: {len(step_logits)} cached steps ({'static' if static else 'kv_len'}), "
              f"max diff vs own full pass {against_ours:.2e}, vs HF {against_hf:.2e}")
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


def test_unsupported_architecture_lists_the_supported_ones():
    from runtime.errors import UnsupportedArchitectureError

    cfg = dict(tiny_hf_model("llama2")[1], architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")
    with pytest.raises(UnsupportedArchitectureError) as err:
        ModelConfig.from_hf_config(cfg)
    for name in ("GPTNeoXForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                 "Phi3ForCausalLM", "PhiForCausalLM"):
        assert name in str(err.value)
    longrope = dict(tiny_hf_model("phi3")[1], rope_parameters=None,
                    rope_scaling={"type": "longrope", "short_factor": [1.0], "long_factor": [1.0]})
    with pytest.raises(UnsupportedArchitectureError, match="longrope"):
        ModelConfig.from_hf_config(longrope)


def test_malformed_config_is_a_checkpoint_error():
    from runtime.errors import CheckpointError

    cfg = dict(tiny_hf_model("llama2")[1])
    del cfg["num_attention_heads"]
    with pytest.raises(CheckpointError, match="num_attention_heads"):
        ModelConfig.from_hf_config(cfg)


def test_classic_config_json_keys_are_read():
    """Hub config.json files predate transformers 5's rope_parameters."""
    phi2 = {"architectures": ["PhiForCausalLM"], "model_type": "phi", "vocab_size": 51200, "hidden_size": 2560,
            "intermediate_size": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": None, "partial_rotary_factor": 0.4, "rope_theta": 10000.0,
            "rope_scaling": None, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5,
            "max_position_embeddings": 2048, "tie_word_embeddings": False, "qk_layernorm": False}
    c = ModelConfig.from_hf_config(phi2)
    assert (c.family, c.head_dim, c.rope_dim, c.n_local_heads) == ("phi", 80, 32, 32)
    llama31 = {"architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 4096,
               "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "rope_theta": 500000.0, "max_position_embeddings": 131072,
               "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    c = ModelConfig.from_hf_config(llama31)
    assert c.rope_type == "llama3" and c.rope_base == 500000.0 and c.n_local_heads == 8
    phi3 = {"architectures": ["Phi3ForCausalLM"], "vocab_size": 32064, "hidden_size": 3072,
            "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
            "rope_scaling": None, "sliding_window": 2047, "max_position_embeddings": 4096}
    c = ModelConfig.from_hf_config(phi3)
    assert c.family == "phi3" and c.layer_windows == (2047,) * 32 and c.rope_type == "default"
    qwen = {"architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936, "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "sliding_window": 32768, "use_sliding_window": False,
            "tie_word_embeddings": True, "max_position_embeddings": 32768}
    c = ModelConfig.from_hf_config(qwen)
    assert c.sliding_window is None and c.qkv_bias and c.tie_word_embeddings


def test_weight_map_reports_missing_and_foreign_tensors():
    from runtime.errors import CheckpointError

    hf_model, cfg = tiny_hf_model("qwen2")
    config = ModelConfig.from_hf_config(cfg)
    sd = dict(hf_model.state_dict())
    del sd["model.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(CheckpointError, match=r"layers\.1\.self_attn\.k_proj\.bias"):
        hf_to_native(sd, config)
    sd = dict(hf_model.state_dict(), **{"model.layers.0.self_attn.q_norm.weight": torch.ones(16)})
    with pytest.raises(CheckpointError, match="q_norm"):
        hf_to_native(sd, config)
    unprefixed = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    assert hf_to_native(unprefixed, config).keys() == hf_to_native(hf_model.state_dict(), config).keys()


@pytest.mark.parametrize("name", ["llama3.1", "phi3", "phi2"])
def test_gptfast_names_map_to_the_same_tensors(name):
    """gpt-fast files keep w1/w3 apart (or, in the DirectML sample's Phi-3, fused gate_up as w1)."""
    from runtime.weight_map import gptfast_to_native

    hf_model, cfg = tiny_hf_model(name)
    config = ModelConfig.from_hf_config(cfg)
    native = hf_to_native(hf_model.state_dict(), config)
    gptfast = dict(native)
    for i in range(config.n_layer):
        p = f"layers.{i}."
        if name == "llama3.1":
            gate, up = gptfast.pop(p + "feed_forward.w13.weight").chunk(2)
            gptfast[p + "feed_forward.w1.weight"], gptfast[p + "feed_forward.w3.weight"] = gate, up
            q, k, v = gptfast.pop(p + "attention.wqkv.weight").split([64, 32, 32])
            gptfast.update({p + "attention.wq.weight": q, p + "attention.wk.weight": k, p + "attention.wv.weight": v})
        elif name == "phi3":
            gptfast[p + "feed_forward.w1.weight"] = gptfast.pop(p + "feed_forward.w13.weight")
    mapped = gptfast_to_native(gptfast, config)
    assert mapped.keys() == native.keys()
    assert all(torch.equal(mapped[k], native[k]) for k in native)
