"""gpt-fast / DirectML-sample `model.pth` files: read with `weights_only=True`, mapped from their
key names, stored as safetensors, and generating exactly what the original HF model generates."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from runtime.checkpoint import read_manifest
from runtime.errors import CheckpointError
from runtime.store import resolve_model
from tests.assets import mistral_tokenizer_model
from tests.runtime.test_store_fixtures import leftovers, tiny_llama


def gptfast_state_dict(model) -> dict[str, torch.Tensor]:
    """The layout the DirectML sample's converter writes: fused wqkv, w1 (gate) / w3 (up)."""
    hf = {k.removeprefix("model."): v for k, v in model.state_dict().items()}
    sd = {"tok_embeddings.weight": hf["embed_tokens.weight"], "norm.weight": hf["norm.weight"],
          "output.weight": hf["lm_head.weight"]}
    for i in range(model.config.num_hidden_layers):
        p, a, m = f"layers.{i}.", f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        sd[p + "attention.wqkv.weight"] = torch.cat(
            [hf[a + "q_proj.weight"], hf[a + "k_proj.weight"], hf[a + "v_proj.weight"]])
        sd[p + "attention.wo.weight"] = hf[a + "o_proj.weight"]
        sd[p + "feed_forward.w1.weight"] = hf[m + "gate_proj.weight"]
        sd[p + "feed_forward.w3.weight"] = hf[m + "up_proj.weight"]
        sd[p + "feed_forward.w2.weight"] = hf[m + "down_proj.weight"]
        sd[p + "attention_norm.weight"] = hf[f"layers.{i}.input_layernorm.weight"]
        sd[p + "ffn_norm.weight"] = hf[f"layers.{i}.post_attention_layernorm.weight"]
    return {k: v.clone() for k, v in sd.items()}


def test_model_pth_converts_and_generates_like_the_hf_model(tmp_path):
    from runtime.engine import Engine, GenerationConfig

    model, config = tiny_llama(3)
    folder = tmp_path / "checkpoints" / "tiny-pytdml"
    folder.mkdir(parents=True)
    torch.save(gptfast_state_dict(model), folder / "model.pth")
    config.save_pretrained(folder)  # config.json beside model.pth
    shutil.copyfile(mistral_tokenizer_model(), folder / "tokenizer.model")

    cache = tmp_path / "cache"
    ckpt = resolve_model(str(folder / "model.pth"), cache_dir=cache)
    manifest = read_manifest(ckpt)
    assert manifest.source["kind"] == "pth" and manifest.architecture == "llama"
    assert resolve_model(str(folder), cache_dir=cache) == ckpt  # the folder form is the same model

    engine = Engine.load(ckpt, device="cpu", precision="float32")
    prompt = [1, *engine.tokenizer.encode("The quick brown fox")]
    ours = engine.generate(prompt, GenerationConfig(max_new_tokens=12, stop_ids=frozenset()))
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    print("quill", ours.token_ids, "transformers", ref)
    assert ours.token_ids == ref


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    _, config = tiny_llama(0)
    config.save_pretrained(folder)
    shutil.copyfile(mistral_tokenizer_model(), folder / "tokenizer.model")

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    cache = tmp_path / "cache"
    for save in (lambda obj, f: torch.save(obj, f), pickle.dump):  # torch zip and legacy pickle
        with open(folder / "model.pth", "wb") as f:
            save({"tok_embeddings.weight": torch.zeros(2), "x": Payload()}, f)
        with pytest.raises(CheckpointError) as info:
            resolve_model(str(folder / "model.pth"), cache_dir=cache)
        print(info.value)
        assert "never unpickles" in str(info.value)
        assert leftovers(cache) == []
