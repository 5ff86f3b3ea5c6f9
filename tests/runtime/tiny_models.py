"""Tiny random-weight Hugging Face models, one per supported architecture, for parity tests.

Each entry is a transformers config small enough to run in milliseconds on CPU but shaped to
exercise what distinguishes the real model: GQA, a sliding window shorter than the test prompt,
Llama 3.1 rope scaling, partial rotary, biases and tied embeddings.
"""

from __future__ import annotations

import torch

VOCAB = 256
COMMON = dict(vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)

# name -> (transformers config class name, kwargs)
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama2": ("LlamaConfig", dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                   num_key_value_heads=4, rms_norm_eps=1e-5)),
    "llama-bias": ("LlamaConfig", dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                       num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    "llama3.1": ("LlamaConfig", dict(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "mistral": ("MistralConfig", dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                      num_key_value_heads=2, head_dim=16, sliding_window=8)),
    "smollm2": ("LlamaConfig", dict(hidden_size=96, intermediate_size=160, num_attention_heads=6,
                                    num_key_value_heads=2, tie_word_embeddings=True, rope_theta=100000.0)),
    "qwen2": ("Qwen2Config", dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                  num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1000000.0)),
    "phi3": ("Phi3Config", dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                num_key_value_heads=4, sliding_window=12, pad_token_id=0)),
    "phi2": ("PhiConfig", dict(hidden_size=80, intermediate_size=160, num_attention_heads=4,
                               partial_rotary_factor=0.4, hidden_act="gelu_new", layer_norm_eps=1e-5)),
}
# Seeds whose random weights do not fall into a one-token greedy loop on the test prompt.
SEEDS = {"phi2": 2}
ARCHITECTURES = {
    "LlamaConfig": "LlamaForCausalLM",
    "MistralConfig": "MistralForCausalLM",
    "Qwen2Config": "Qwen2ForCausalLM",
    "Phi3Config": "Phi3ForCausalLM",
    "PhiConfig": "PhiForCausalLM",
}


def tiny_hf_model(name: str, *, attn_implementation: str = "eager", seed: int | None = None):
    """A transformers model (eval mode, float32) with seeded random weights, and its config dict
    as it would appear in the checkpoint's config.json."""
    import transformers

    cls_name, kwargs = TINY_CONFIGS[name]
    config = getattr(transformers, cls_name)(**COMMON, **kwargs)
    config.architectures = [ARCHITECTURES[cls_name]]
    config._attn_implementation = attn_implementation
    torch.manual_seed(SEEDS.get(name, 0) if seed is None else seed)
    model = getattr(transformers, ARCHITECTURES[cls_name])(config).eval()
    decisive_init_(model)
    return model, config.to_dict()


@torch.no_grad()
def decisive_init_(model, *, embed_std: float = 0.5, norm_bias_std: float = 0.5) -> None:
    """Re-initialise a transformers model in place with fan-in scaled random weights.

    The default init (std 0.02) gives near-uniform logits and greedy runs that repeat one token;
    fan-in scaled weights give decisive, varied argmaxes, so greedy comparisons mean more.
    """
    for pname, p in model.named_parameters():
        if "norm" in pname:
            p.uniform_(0.8, 1.2) if pname.endswith("weight") else p.normal_(0.0, norm_bias_std)
        elif p.dim() == 1:
            p.normal_(0.0, 0.05)  # biases
        elif "embed_tokens" in pname:
            p.normal_(0.0, embed_std)
        else:
            p.normal_(0.0, 1.5 / p.shape[1] ** 0.5)

