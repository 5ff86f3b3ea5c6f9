"""GGUF conversion on tiny models written the way llama.cpp writes them (its tensor names from the
`gguf` package's own name map, q/k permuted as `convert_hf_to_gguf.py` does for `llama`), checked
against the original weights and against transformers' GGUF loader."""

from __future__ import annotations

import gguf  # a dependency of the runtime: missing, the test fails instead of skipping
import numpy as np
import pytest
import torch

from runtime.checkpoint import load_tensors, read_manifest
from runtime.store import resolve_model
from runtime.weight_map import hf_to_native
from tests.assets import llama_cpp_models_dir
from tests.runtime.test_store_fixtures import transformers_from_gguf
from tests.runtime.tiny_models import decisive_init_


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # convert_hf_to_gguf.py, LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _copy_tokenizer(writer, vocab: str) -> None:
    r = gguf.GGUFReader(str(llama_cpp_models_dir() / vocab))
    f = lambda k: r.fields[k].contents()  # noqa: E731
    writer.add_tokenizer_model(f("tokenizer.ggml.model"))
    writer.add_token_list(f("tokenizer.ggml.tokens"))
    writer.add_token_scores(f("tokenizer.ggml.scores"))
    writer.add_token_types(f("tokenizer.ggml.token_type"))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_pad_token_id(0)  # else transformers gives Phi-3 its default pad id 32000 (> vocab)


def write_gguf(path, model, arch: str, quant: str, rope_freqs: np.ndarray | None = None) -> None:
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    if arch == "phi2":  # LayerNorm and partial rotary
        writer.add_layer_norm_eps(cfg.layer_norm_eps)
        writer.add_rope_dimension_count(int(head_dim * cfg.rope_parameters["partial_rotary_factor"]))
    else:
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_rope_dimension_count(head_dim)
    _copy_tokenizer(writer, "ggml-vocab-llama-spm.gguf")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w = t.numpy().astype(np.float32)
        if arch == "llama" and "q_proj" in name:
            w = _llama_cpp_permute(w, cfg.num_attention_heads)
        if arch == "llama" and "k_proj" in name:
            w = _llama_cpp_permute(w, cfg.num_key_value_heads)
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if quant == "Q8_0" and w.ndim == 2:
            q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(target, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(target, w)
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tiny(arch: str):
    import transformers

    common = dict(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        config = transformers.LlamaConfig(**common, tie_word_embeddings=False)
    elif arch == "qwen2":
        config = transformers.Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1e6)
    elif arch == "phi3":
        config = transformers.Phi3Config(**{**common, "num_key_value_heads": 4}, pad_token_id=0)
    else:
        config = transformers.PhiConfig(**{**common, "hidden_size": 80, "num_key_value_heads": 4},
                                        partial_rotary_factor=0.4, hidden_act="gelu_new")
    cls = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
           "phi3": transformers.Phi3ForCausalLM, "phi2": transformers.PhiForCausalLM}[arch]
    torch.manual_seed(7)
    model = cls(config).eval()
    decisive_init_(model, embed_std=1.0, norm_bias_std=0.05)
    return model


HF_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM",
              "phi2": "PhiForCausalLM"}


@pytest.mark.parametrize("arch, quant", [("llama", "F32"), ("llama", "Q8_0"), ("qwen2", "F32"),
                                         ("phi3", "F32")])
def test_tiny_gguf_matches_original_and_transformers(tmp_path, arch, quant):
    from runtime.engine import Engine, GenerationConfig

    model = _tiny(arch)
    path = tmp_path / f"tiny-{arch}.{quant}.gguf"
    write_gguf(path, model, arch, quant)
    ckpt = resolve_model(str(path), cache_dir=tmp_path / "cache")
    manifest = read_manifest(ckpt)
    ours = load_tensors(ckpt, manifest)
    engine = Engine.load(ckpt, device="cpu", precision="float32")

    theirs = transformers_from_gguf(path)
    expected = hf_to_native(theirs.state_dict(), engine.config)
    assert ours.keys() == expected.keys()
    assert [k for k in ours if not torch.equal(ours[k], expected[k])] == []
    if quant == "F32":  # lossless: the un-permuted q/k are the original rows
        original = hf_to_native(model.state_dict(), engine.config)
        assert [k for k in ours if not torch.equal(ours[k], original[k])] == []
    assert manifest.config["tie_word_embeddings"] == (arch == "qwen2")
    assert manifest.config["architectures"] == [HF_CLASSES[arch]]

    prompt = [1, *engine.tokenizer.encode("def add(a, b):")]
    got = engine.generate(prompt, GenerationConfig(max_new_tokens=12, stop_ids=frozenset()))
    ref = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                          eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    print(f"{arch} {quant}: {len(ours)} tensors equal; quill {got.token_ids} transformers {ref}")
    assert got.token_ids == ref


def test_tiny_phi2_gguf_matches_the_original_model(tmp_path):
    """transformers cannot load phi2 GGUF files, so the reference is the model that was written:
    LayerNorm biases, partial rotary (0.4) and the lm_head bias must all come back."""
    from runtime.engine import Engine, GenerationConfig

    model = _tiny("phi2")
    path = tmp_path / "tiny-phi2.gguf"
    write_gguf(path, model, "phi2", "F32")
    ckpt = resolve_model(str(path), cache_dir=tmp_path / "cache")
    manifest = read_manifest(ckpt)
    engine = Engine.load(ckpt, device="cpu", precision="float32")
    ours = load_tensors(ckpt, manifest)
    original = hf_to_native(model.state_dict(), engine.config)
    assert ours.keys() == original.keys()
    assert [k for k in ours if not torch.equal(ours[k], original[k])] == []
    assert manifest.architecture == "phi" and engine.config.rope_dim == 8

    prompt = [1, *engine.tokenizer.encode("def add(a, b):")]
    got = engine.generate(prompt, GenerationConfig(max_new_tokens=12, stop_ids=frozenset()))
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    print(f"phi2: {len(ours)} tensors equal; quill {got.token_ids} transformers {ref}")
    assert got.token_ids == ref


def _llama_cpp_rope_freqs(scaling: dict, head_dim: int, theta: float) -> np.ndarray:
    # convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors (Llama 3.1 rope scaling)
    import math

    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def test_llama31_rope_scaling_comes_back_from_rope_freqs(tmp_path):
    """Llama 3.1 GGUF files carry rope scaling only as a `rope_freqs` tensor; the converter turns
    it back into HF's `rope_scaling`, so the model rotates exactly like the original."""
    import transformers

    from runtime.engine import Engine, GenerationConfig

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_theta=500000.0, rope_scaling=dict(scaling), bos_token_id=1, eos_token_id=2)
    torch.manual_seed(11)
    model = transformers.LlamaForCausalLM(config).eval()
    decisive_init_(model, embed_std=1.0)
    path = tmp_path / "tiny-llama31.gguf"
    write_gguf(path, model, "llama", "F32", rope_freqs=_llama_cpp_rope_freqs(scaling, 32, 500000.0))
    ckpt = resolve_model(str(path), cache_dir=tmp_path / "cache")
    recovered = read_manifest(ckpt).config["rope_scaling"]
    print("recovered rope_scaling:", recovered)
    assert recovered == scaling

    engine = Engine.load(ckpt, device="cpu", precision="float32")
    prompt = [1, *engine.tokenizer.encode("Once upon a time in a land far away, there lived")]
    got = engine.generate(prompt, GenerationConfig(max_new_tokens=12, stop_ids=frozenset()))
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    print(f"llama3.1: quill {got.token_ids} transformers {ref}")
    assert got.token_ids == ref


def test_storage_dtype_by_size():
    from runtime.convert.gguf import storage_dtype

    assert storage_dtype(135_000_000) == torch.float32  # SmolLM2: exact parity
    assert storage_dtype(2_000_000_000) == torch.float32
    assert storage_dtype(7_000_000_000) == torch.float16  # Llama-2-7B: half the disk
