"""Model hyper-parameters, read from a checkpoint's Hugging Face `config.json`.

One frozen dataclass (`ModelConfig`, gpt-fast's `ModelArgs` under another name) describes every
model the runtime can run. It is built from the checkpoint's own config dict, never from a model
name or a path: the architecture comes from `architectures` (or `model_type`), everything else
from the numbers in the dict. Both config flavours are read: the classic one (`rope_theta`,
`rope_scaling`, `partial_rotary_factor` at the top level) and transformers 5's `rope_parameters`.

Families (this is the checkpoint manifest's `architecture`):
    llama  Llama 2/3/3.1, Mistral, CodeLlama, SmolLM2, Qwen2: RMSNorm, SwiGLU, sequential block
    phi3   Phi-3 (fused qkv / gate_up in HF, same block as llama otherwise)
    phi    Phi-2: LayerNorm, one norm feeding attention and MLP in parallel, GELU, biases
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import CheckpointError, UnsupportedArchitectureError

# HF class name -> (family, model_type)
SUPPORTED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "LlamaForCausalLM": ("llama", "llama"),
    "MistralForCausalLM": ("llama", "mistral"),
    "Qwen2ForCausalLM": ("llama", "qwen2"),
    "Phi3ForCausalLM": ("phi3", "phi3"),
    "PhiForCausalLM": ("phi", "phi"),
}
_BY_MODEL_TYPE = {mt: (arch, fam) for arch, (fam, mt) in SUPPORTED_ARCHITECTURES.items()}

# RoPE variants whose frequencies do not depend on the current sequence length.
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
SUPPORTED_ACTIVATIONS = ("silu", "gelu_new", "gelu_pytorch_tanh", "gelu")


def _unsupported(what: str) -> UnsupportedArchitectureError:
    names = ", ".join(SUPPORTED_ARCHITECTURES)
    return UnsupportedArchitectureError(
        f"{what}. Quill runs these architectures: {names} (Llama 2/3/3.1, CodeLlama, Mistral, "
        "SmolLM2, Qwen2/2.5(-Coder), Phi-3-mini-4k, Phi-2). Pick a model of one of them."
    )


@dataclass(frozen=True)
class ModelConfig:
    family: str  # "llama" | "phi3" | "phi"
    architecture: str  # HF class name, e.g. "MistralForCausalLM"
    vocab_size: int
    dim: int  # hidden size D
    n_layer: int
    n_head: int  # query heads H
    n_local_heads: int  # key/value heads KVH (GQA when < H)
    head_dim: int
    intermediate_size: int  # F
    norm_eps: float
    max_position_embeddings: int
    rope_base: float
    rope_dim: int  # leading dims of each head that are rotated (partial rotary for Phi-2)
    rope_scaling: tuple[tuple[str, Any], ...] = ()  # ((key, value), ...) incl. "rope_type"
    layer_windows: tuple[int | None, ...] = ()  # per layer: sliding window W or None (full)
    hidden_act: str = "silu"
    qkv_bias: bool = False
    out_bias: bool = False  # wo bias (phi)
    mlp_bias: bool = False  # w13/w2 (llama mlp_bias) or fc1/fc2 (phi)
    output_bias: bool = False  # lm_head bias (phi)
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    @property
    def norm_type(self) -> str:
        return "layer" if self.family == "phi" else "rms"

    @property
    def parallel_block(self) -> bool:
        """Phi-2: attention and MLP both read the same normed input and add to the residual."""
        return self.family == "phi"

    @property
    def rope_type(self) -> str:
        return dict(self.rope_scaling).get("rope_type", "default")

    @property
    def sliding_window(self) -> int | None:
        windows = {w for w in self.layer_windows if w is not None}
        return max(windows) if windows else None

    @classmethod
    def from_hf_config(cls, cfg: Mapping[str, Any]) -> "ModelConfig":
        """Read a Hugging Face config.json dict; raise `UnsupportedArchitectureError` for models the
        runtime does not implement and `CheckpointError` for a config that lacks required keys."""
        architecture, family = _architecture(cfg)
        try:
            return cls._from_hf_config(cfg, architecture, family)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            raise CheckpointError(
                f"The model's config.json is incomplete or malformed ({type(err).__name__}: {err}). "
                "Download or convert the model again."
            ) from err

    @classmethod
    def _from_hf_config(cls, cfg: Mapping[str, Any], architecture: str, family: str) -> "ModelConfig":
        n_head = int(cfg["num_attention_heads"])
        dim = int(cfg["hidden_size"])
        head_dim = int(cfg.get("head_dim") or dim // n_head)
        n_local_heads = int(cfg.get("num_key_value_heads") or n_head)
        if n_head % n_local_heads:
            raise _unsupported(
                f"num_attention_heads={n_head} is not a multiple of num_key_value_heads={n_local_heads}"
            )
        n_layer = int(cfg["num_hidden_layers"])
        rope_base, rotary_factor, scaling = _rope(cfg, family)
        hidden_act = cfg.get("hidden_act") or cfg.get("activation_function") or "silu"
        if hidden_act not in SUPPORTED_ACTIVATIONS:
            raise _unsupported(f"activation {hidden_act!r} is not supported")
        if cfg.get("qk_layernorm"):
            raise _unsupported("qk_layernorm=true (a Phi-1.5 variant) is not supported")
        is_phi = family == "phi"
        # Only LlamaForCausalLM reads `attention_bias` (q, k, v and o together).
        llama_bias = architecture == "LlamaForCausalLM" and bool(cfg.get("attention_bias"))
        eos = cfg.get("eos_token_id")
        return cls(
            family=family,
            architecture=architecture,
            vocab_size=int(cfg["vocab_size"]),
            dim=dim,
            n_layer=n_layer,
            n_head=n_head,
            n_local_heads=n_local_heads,
            head_dim=head_dim,
            intermediate_size=int(cfg["intermediate_size"]),
            norm_eps=float(cfg.get("layer_norm_eps" if is_phi else "rms_norm_eps") or 1e-5),
            max_position_embeddings=int(cfg.get("max_position_embeddings") or 2048),
            rope_base=rope_base,
            rope_dim=int(head_dim * rotary_factor),
            rope_scaling=scaling,
            layer_windows=_layer_windows(cfg, architecture, n_layer),
            hidden_act=hidden_act,
            qkv_bias=is_phi or architecture == "Qwen2ForCausalLM" or llama_bias,
            out_bias=is_phi or llama_bias,
            mlp_bias=is_phi or (architecture == "LlamaForCausalLM" and bool(cfg.get("mlp_bias"))),
            output_bias=is_phi,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        )


def _architecture(cfg: Mapping[str, Any]) -> tuple[str, str]:
    names = cfg.get("architectures") or []
    for name in names:
        if name in SUPPORTED_ARCHITECTURES:
            return name, SUPPORTED_ARCHITECTURES[name][0]
    if not names and cfg.get("model_type") in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[cfg["model_type"]]
    found = ", ".join(names) or f"model_type {cfg.get('model_type')!r}"
    raise _unsupported(f"The checkpoint's config.json names {found}, which is not supported")


def _rope(cfg: Mapping[str, Any], family: str) -> tuple[float, float, tuple]:
    """Return (theta, partial rotary factor, scaling items) from either config flavour."""
    params = dict(cfg.get("rope_parameters") or {})
    legacy = dict(cfg.get("rope_scaling") or {})
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    default_factor = 0.5 if family == "phi" else 1.0  # PhiConfig's default
    factor = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", default_factor))
    scaling = {**legacy, **{k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}}
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    scaling.pop("type", None)
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise _unsupported(
            f"rope scaling {rope_type!r} is not supported (supported: {', '.join(SUPPORTED_ROPE_TYPES)}; "
            "for Phi-3 use the 4k variant, which has no rope scaling)"
        )
    if rope_type == "default":
        return float(theta), float(factor), ()
    items = tuple(sorted({**scaling, "rope_type": rope_type}.items()))
    return float(theta), float(factor), items


def _layer_windows(cfg: Mapping[str, Any], architecture: str, n_layer: int) -> tuple[int | None, ...]:
    """Sliding-window size per layer, read the way transformers reads each config."""
    window = cfg.get("sliding_window")
    if architecture == "Qwen2ForCausalLM" and not cfg.get("use_sliding_window"):
        window = None  # Qwen2 ships a window size but only uses it with use_sliding_window
    if architecture in ("LlamaForCausalLM", "PhiForCausalLM") or window is None:
        return (None,) * n_layer
    layer_types = cfg.get("layer_types")
    if layer_types and len(layer_types) == n_layer:
        return tuple(int(window) if t == "sliding_attention" else None for t in layer_types)
    if architecture == "Qwen2ForCausalLM":
        first = int(cfg.get("max_window_layers", 0))  # layers from this index on slide
        return tuple(int(window) if i >= first else None for i in range(n_layer))
    return (int(window),) * n_layer
