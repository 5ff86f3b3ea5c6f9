"""GGUF file -> native checkpoint.

Reads the file with the `gguf` package, dequantizes every tensor, renames llama.cpp's tensors to
Hugging Face names, builds an HF-style `config.json` from the GGUF metadata and exports the
tokenizer with `runtime.tokenizer.export_gguf_tokenizer`. The HF tensors then go through the same
`weight_map.hf_to_native` as any HF checkpoint.

llama.cpp's converter permutes the rows of q and k for its interleaved-pair RoPE
(`convert_hf_to_gguf.py`, `LlamaModel.permute`) in `llama` files; `_unpermute` restores Hugging
Face's rotate_half layout. Qwen2, Phi-3 and Phi-2 files use NEOX RoPE and are stored
unpermuted; Phi-3 keeps its fused qkv and gate_up matrices (`attn_qkv`, `ffn_up`).

Weights are stored in float32 for small models (<= 2B parameters; exact parity with transformers
loading the same GGUF) and float16 for large ones (half the disk and memory).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CheckpointError, UnsupportedArchitectureError
from ..progress import ProgressCallback
from ..weight_map import hf_to_native
from .steps import ConversionTarget, model_config

# general.architecture -> (HF class, HF model_type, llama.cpp permuted q/k)
GGUF_ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "llama", True),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", False),
    "phi3": ("Phi3ForCausalLM", "phi3", False),
    "phi2": ("PhiForCausalLM", "phi", False),
}
SMALL_MODEL_PARAMS = 2_000_000_000


def storage_dtype(n_params: int) -> torch.dtype:
    """float32 up to 2B parameters (exact parity with transformers), float16 above (half the
    disk and memory of float32; GGUF sources are quantized anyway)."""
    return torch.float32 if n_params <= SMALL_MODEL_PARAMS else torch.float16

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LLAMA_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_PHI3_BLOCK = {
    "attn_qkv": "self_attn.qkv_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_up": "mlp.gate_up_proj",  # llama.cpp keeps Phi-3's fused gate_up under ffn_up
    "ffn_down": "mlp.down_proj",
}
_PHI2_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_qkv": "self_attn.qkv",  # older phi-2 files: fused, split in `read_gguf_tensors`
    "attn_output": "self_attn.dense",
    "attn_norm": "input_layernorm",
    "ffn_up": "mlp.fc1",
    "ffn_down": "mlp.fc2",
}
_BLOCK_NAMES = {"llama": _LLAMA_BLOCK, "qwen2": _LLAMA_BLOCK, "phi3": _PHI3_BLOCK, "phi2": _PHI2_BLOCK}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_TOP = re.compile(r"^(token_embd|output_norm|output)\.(weight|bias)$")
# Tensors llama.cpp derives from the config (rope frequencies); the HF model recomputes them.
_SKIPPED = {"rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"}


def open_gguf(path: Path):
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        _ = [t.name for t in reader.tensors]
    except Exception as err:  # the gguf package raises ValueError, struct/IndexError, ...
        raise CheckpointError(
            f"{path} is not a valid GGUF file ({type(err).__name__}: {err}). It is corrupt or "
            "was cut short: download it again."
        ) from err
    return reader


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def gguf_architecture(reader, path: Path) -> str:
    """`general.architecture`, if Quill converts it; else an error naming those it does."""
    arch = _field(reader, "general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{path.name} is a GGUF of architecture {arch!r}; Quill converts GGUF files of "
            f"these architectures: {', '.join(GGUF_ARCHITECTURES)} (Llama 2/3, Mistral, "
            "SmolLM2, CodeLlama, Qwen2, Phi-3, Phi-2). For others use the Hugging Face repo."
        )
    return arch


def gguf_config(reader, path: Path) -> dict:
    """An HF-style config dict from GGUF metadata (the keys `ModelConfig.from_hf_config` reads)."""
    arch = gguf_architecture(reader, path)
    hf_class, model_type, _ = GGUF_ARCHITECTURES[arch]
    names = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in names:
        raise CheckpointError(f"{path} has no token_embd.weight tensor; it is not a model file.")
    meta = lambda key, default=None: _field(reader, f"{arch}.{key}", default)  # noqa: E731
    n_head = int(meta("attention.head_count"))
    dim = int(meta("embedding_length"))
    config = {
        "architectures": [hf_class],
        "model_type": model_type,
        "vocab_size": int(names["token_embd.weight"].shape[-1]),
        "hidden_size": dim,
        "intermediate_size": int(meta("feed_forward_length")),
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(meta("attention.head_count_kv", n_head)),
        "head_dim": int(meta("attention.key_length", dim // n_head)),
        "max_position_embeddings": int(meta("context_length", 2048)),
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(meta("rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
    }
    if meta("rope.scaling.type") == "linear":
        config["rope_scaling"] = {"rope_type": "linear", "factor": float(meta("rope.scaling.factor"))}
    if arch == "llama" and "rope_freqs.weight" in names:  # Llama 3.1+: scaling stored as a tensor
        rope_dim = int(meta("rope.dimension_count", config["head_dim"]))
        factors = np.asarray(names["rope_freqs.weight"].data, dtype=np.float64)
        scaling = llama3_rope_scaling(factors, rope_dim, config["rope_theta"])
        if scaling is None and not np.allclose(factors, 1.0):
            raise UnsupportedArchitectureError(
                f"{path.name} stores rope frequency factors that do not follow Llama 3.1's rope "
                "scaling; Quill cannot run it. Use the model's Hugging Face repo instead."
            )
        if scaling:
            config["rope_scaling"] = scaling
    if arch == "qwen2":
        config["use_sliding_window"] = False
    if arch == "phi3":
        if meta("attention.sliding_window"):
            config["sliding_window"] = int(meta("attention.sliding_window"))
        if "rope_factors_long.weight" in names:  # Phi-3 128k: LongRoPE, which the runtime lacks
            config["rope_scaling"] = {"rope_type": "longrope"}
    if arch == "phi2":
        head_dim = config["head_dim"]
        config.update(
            hidden_act="gelu_new",
            layer_norm_eps=float(meta("attention.layer_norm_epsilon", 1e-5)),
            partial_rotary_factor=int(meta("rope.dimension_count", head_dim)) / head_dim,
        )
    return config


def _llama3_factors(freqs: np.ndarray, factor: float, low: float, high: float, old_ctx: float):
    """llama.cpp's per-frequency divisors for Llama 3.1 rope scaling (convert_hf_to_gguf.py)."""
    wavelen = 2 * np.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    medium = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < old_ctx / high, 1.0, np.where(wavelen > old_ctx / low, factor, medium))


def llama3_rope_scaling(factors: np.ndarray, rope_dim: int, theta: float) -> dict | None:
    """Recover HF's `rope_scaling` ("llama3") from the `rope_freqs` tensor llama.cpp writes instead.

    The smoothing term is linear in the frequency, `s = a * freq + b`; with low_freq_factor = 1
    (every Llama 3.x) `a` and `b` give high_freq_factor and the original context length. Any
    parameters that reproduce the tensor give the same rotary frequencies, which is checked.
    Returns None when the factors are all 1 or follow no such curve.
    """
    if np.allclose(factors, 1.0):
        return None
    freqs = 1.0 / theta ** (np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    factor = float(factors.max())
    mid = (factors > 1 + 1e-6) & (factors < factor * (1 - 1e-6))
    s = (1 / factors[mid] - 1 / factor) / (1 - 1 / factor)
    if mid.sum() >= 2:
        a, b = np.polyfit(freqs[mid], s, 1)
        high = 1 - 1 / b if b < 0 else 4.0
        old_ctx = float(a * 2 * np.pi * (high - 1))
    elif mid.any():  # one smoothed frequency: take Llama 3.1's high_freq_factor
        high = 4.0
        old_ctx = float((s[0] + 1 / (high - 1)) * 2 * np.pi * (high - 1) / freqs[mid][0])
    else:  # none: any context length between the two regions gives these factors
        high = 4.0
        old_ctx = float((2 * np.pi / freqs[factors >= factor * (1 - 1e-6)]).min())
    if abs(old_ctx - round(old_ctx)) < 1e-3 * old_ctx:
        old_ctx = round(old_ctx)
    if not np.allclose(_llama3_factors(freqs, factor, 1.0, high, old_ctx), factors, rtol=1e-4):
        return None
    return {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
            "high_freq_factor": float(round(high, 6)), "original_max_position_embeddings": old_ctx}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved pairs -> rotate_half halves)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(gguf_name: str, arch: str) -> str | None:
    """The Hugging Face name of a llama.cpp tensor (None for tensors HF recomputes)."""
    if gguf_name in _SKIPPED:
        return None
    top = _TOP.match(gguf_name)
    if top:
        base = _GLOBAL_NAMES[top.group(1)]
        if arch == "phi2" and base == "model.norm":
            base = "model.final_layernorm"
        return f"{base}.{top.group(2)}"
    m = _BLOCK.match(gguf_name)
    block = _BLOCK_NAMES[arch]
    if not m or m.group(2) not in block:
        raise CheckpointError(
            f"GGUF tensor {gguf_name!r} has no Hugging Face counterpart in a {arch} model; the "
            "file is not a plain model of that architecture."
        )
    return f"model.layers.{m.group(1)}.{block[m.group(2)]}.{m.group(3)}"


def _split_qkv(tensors: dict[str, torch.Tensor]) -> None:
    """Old phi-2 files fuse q, k and v (equal thirds: phi-2 has no GQA); HF keeps them apart."""
    for name in [n for n in tensors if ".self_attn.qkv." in n]:
        for part, t in zip(("q_proj", "k_proj", "v_proj"), tensors.pop(name).chunk(3, dim=0)):
            tensors[name.replace(".qkv.", f".{part}.")] = t.contiguous()


def read_gguf_tensors(
    reader, config: dict, dtype: torch.dtype, step: Callable[[int, int], None]
) -> dict[str, torch.Tensor]:
    from gguf import quants

    arch = _field(reader, "general.architecture")
    permuted = GGUF_ARCHITECTURES[arch][2]
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    tensors: dict[str, torch.Tensor] = {}
    total = len(reader.tensors) + 1  # + the final write
    for i, t in enumerate(reader.tensors):
        step(i, total)
        name = hf_name(t.name, arch)
        if name is None:
            continue
        try:
            w = quants.dequantize(t.data, t.tensor_type)
        except Exception as err:
            raise CheckpointError(f"GGUF tensor {t.name} cannot be dequantized ({err}).") from err
        # np.array copies: F32 tensors would otherwise be read-only views of the memory map.
        w = np.array(w, dtype=np.float32).reshape(list(reversed([int(d) for d in t.shape])))
        kind = t.name.split(".")[2] if t.name.startswith("blk.") else ""
        if permuted and kind in heads:
            w = _unpermute(w, int(heads[kind]))
        tensors[name] = torch.from_numpy(np.ascontiguousarray(w)).to(dtype)
    _split_qkv(tensors)
    return tensors


def convert_gguf(
    path: str | Path,
    target: str | Path,
    *,
    source: dict,
    progress: ProgressCallback | None = None,
    reserve_bytes: int = 0,
    workdir: str | Path | None = None,
) -> Path:
    """Convert the GGUF file `path` into a checkpoint at `target` (which must not exist)."""
    from ..tokenizer import export_gguf_tokenizer

    path, out = Path(path), ConversionTarget(Path(target), source, progress, reserve_bytes)
    reader = open_gguf(path)
    try:
        config = gguf_config(reader, path)
    except (TypeError, ValueError, KeyError) as err:  # a required metadata key is absent
        raise CheckpointError(
            f"{path} lacks model metadata ({type(err).__name__}: {err}); it is not a complete "
            "llama.cpp model file. Download it again."
        ) from err
    cfg = model_config(config)
    n_params = sum(int(np.prod([int(d) for d in t.shape])) for t in reader.tensors)
    dtype = storage_dtype(n_params)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    out.check_space(
        n_params * dtype.itemsize,
        what=f"converting {path.name} ({n_params / 1e6:.0f}M parameters)",
    )
    native = hf_to_native(read_gguf_tensors(reader, config, dtype, out.step), cfg)
    work = Path(workdir) if workdir else out.path.parent
    work.mkdir(parents=True, exist_ok=True)
    # The tokenizer is exported to files first: the checkpoint copies its tokenizer from files.
    with tempfile.TemporaryDirectory(dir=work, prefix=".tok-") as tok_dir:
        names = export_gguf_tokenizer(path, Path(tok_dir))
        return out.write(
            native, config=config, architecture=cfg.family,
            tokenizer_files={n: Path(tok_dir) / n for n in names}, steps=len(reader.tensors) + 1,
        )
