"""Tensor names: Hugging Face and gpt-fast checkpoints -> the runtime's native (gpt-fast) names.

Native names are what `model.Transformer` declares and what converted checkpoints store:

    tok_embeddings.weight                 layers.{i}.attention.wqkv.weight/.bias   (q, then k, then v)
    layers.{i}.attention_norm.weight/.bias  layers.{i}.attention.wo.weight/.bias
    layers.{i}.ffn_norm.weight            layers.{i}.feed_forward.w13.weight   (gate rows, then up rows)
    layers.{i}.feed_forward.w2.weight     phi: layers.{i}.feed_forward.w1/.w2 .weight/.bias (fc1, fc2)
    norm.weight/.bias                     output.weight/.bias   (no output.weight when embeddings are tied)

q/k stay in Hugging Face's rotate-half layout. Per-layer maps are literal dicts, as in gpt-fast's
`convert_hf_checkpoint.py`; a list value means "concatenate these along dim 0".
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from .config import ModelConfig
from .errors import CheckpointError

_LLAMA_LAYER = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wqkv.weight": ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
    "attention.wqkv.bias": ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"],
    "attention.wo.weight": "self_attn.o_proj.weight",
    "attention.wo.bias": "self_attn.o_proj.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w13.weight": ["mlp.gate_proj.weight", "mlp.up_proj.weight"],
    "feed_forward.w13.bias": ["mlp.gate_proj.bias", "mlp.up_proj.bias"],
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w2.bias": "mlp.down_proj.bias",
}
_PHI3_LAYER = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wqkv.weight": "self_attn.qkv_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w13.weight": "mlp.gate_up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
_PHI_LAYER = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention_norm.bias": "input_layernorm.bias",
    "attention.wqkv.weight": ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
    "attention.wqkv.bias": ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"],
    "attention.wo.weight": "self_attn.dense.weight",
    "attention.wo.bias": "self_attn.dense.bias",
    "feed_forward.w1.weight": "mlp.fc1.weight",
    "feed_forward.w1.bias": "mlp.fc1.bias",
    "feed_forward.w2.weight": "mlp.fc2.weight",
    "feed_forward.w2.bias": "mlp.fc2.bias",
}
_TOP = {"tok_embeddings.weight": "embed_tokens.weight", "norm.weight": "norm.weight"}
_PHI_TOP = {
    "tok_embeddings.weight": "embed_tokens.weight",
    "norm.weight": "final_layernorm.weight",
    "norm.bias": "final_layernorm.bias",
}
# Buffers some exporters saved alongside the weights; they are recomputed, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "attn.masked_bias", "attn.bias")


def native_names(config: ModelConfig) -> list[str]:
    """Every tensor name `model.Transformer(config)` expects, in checkpoint order."""
    names = ["tok_embeddings.weight"]
    for i in range(config.n_layer):
        p = f"layers.{i}."
        names.append(p + "attention_norm.weight")
        if config.norm_type == "layer":
            names.append(p + "attention_norm.bias")
        names.append(p + "attention.wqkv.weight")
        names += [p + "attention.wqkv.bias"] if config.qkv_bias else []
        names.append(p + "attention.wo.weight")
        names += [p + "attention.wo.bias"] if config.out_bias else []
        if config.parallel_block:
            mlp = ["w1", "w2"]
        else:
            names.append(p + "ffn_norm.weight")
            mlp = ["w13", "w2"]
        for w in mlp:
            names.append(p + f"feed_forward.{w}.weight")
            names += [p + f"feed_forward.{w}.bias"] if config.mlp_bias else []
    names.append("norm.weight")
    names += ["norm.bias"] if config.norm_type == "layer" else []
    if not config.tie_word_embeddings:
        names.append("output.weight")
        names += ["output.bias"] if config.output_bias else []
    return names


def _source_map(config: ModelConfig) -> dict[str, str | list[str]]:
    """native name -> HF name(s) without the "model." prefix (lm_head keeps its own)."""
    layer = {"llama": _LLAMA_LAYER, "phi3": _PHI3_LAYER, "phi": _PHI_LAYER}[config.family]
    top = _PHI_TOP if config.family == "phi" else _TOP
    mapping: dict[str, str | list[str]] = {}
    for name in native_names(config):
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            src = layer[rest]
            mapping[name] = [f"layers.{i}.{s}" for s in src] if isinstance(src, list) else f"layers.{i}.{src}"
        elif name.startswith("output."):
            mapping[name] = "lm_head." + name.split(".", 1)[1]
        else:
            mapping[name] = top[name]
    return mapping


def hf_to_native(hf: Mapping[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Rename (and fuse) a Hugging Face state dict; keys may carry the "model." prefix or not."""
    plain = {k.removeprefix("model."): v for k, v in hf.items()}
    out: dict[str, Tensor] = {}
    missing: list[str] = []
    used: set[str] = set()
    for native, src in _source_map(config).items():
        parts = src if isinstance(src, list) else [src]
        absent = [s for s in parts if s not in plain]
        if absent:
            missing += absent
            continue
        used.update(parts)
        tensors = [plain[s] for s in parts]
        out[native] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
    if config.tie_word_embeddings:
        used.add("lm_head.weight")  # some exporters save the tied copy too
    _check(missing, [k for k in plain if k not in used and not k.endswith(_IGNORED_SUFFIXES)], "Hugging Face")
    return out


def gptfast_to_native(sd: Mapping[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Rename a gpt-fast / DirectML-sample `model.pth` state dict.

    Those files already use native names except for the MLP: separate `w1` (gate) and `w3` (up),
    or, in the DirectML sample's Phi-3, the fused gate_up matrix stored as `w1`. Separate
    wq/wk/wv (older gpt-fast files) are fused too. q/k must be in rotate-half layout, which is what
    the DirectML sample's converter writes (it does not permute).
    """
    sd = dict(sd)
    for i in range(config.n_layer):
        p = f"layers.{i}."
        for kind in ("weight", "bias"):
            qkv = [p + f"attention.{w}.{kind}" for w in ("wq", "wk", "wv")]
            if all(k in sd for k in qkv):
                sd[p + f"attention.wqkv.{kind}"] = torch.cat([sd.pop(k) for k in qkv], dim=0)
            if config.parallel_block:
                continue
            w1, w3 = p + f"feed_forward.w1.{kind}", p + f"feed_forward.w3.{kind}"
            if w1 in sd and w3 in sd:
                sd[p + f"feed_forward.w13.{kind}"] = torch.cat([sd.pop(w1), sd.pop(w3)], dim=0)
            elif w1 in sd and sd[w1].shape[0] == 2 * config.intermediate_size:
                sd[p + f"feed_forward.w13.{kind}"] = sd.pop(w1)  # already fused gate_up
    expected = native_names(config)
    if config.tie_word_embeddings:
        sd.pop("output.weight", None)
    missing = [n for n in expected if n not in sd]
    expected_set = set(expected)
    _check(missing, [k for k in sd if k not in expected_set and not k.endswith(_IGNORED_SUFFIXES)], "gpt-fast")
    return {n: sd[n] for n in expected}


def _check(missing: list[str], unexpected: list[str], kind: str) -> None:
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise CheckpointError(
            f"The {kind} checkpoint is missing tensors its config.json requires: {shown}. "
            "The download is incomplete or the weights do not match the config; fetch the model again."
        )
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (f" and {len(unexpected) - 8} more" if len(unexpected) > 8 else "")
        raise CheckpointError(
            f"The {kind} checkpoint has tensors its config.json does not explain: {shown}. "
            "The weights belong to a different architecture than config.json says."
        )
