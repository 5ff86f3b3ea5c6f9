"""Builders shared by the store, conversion and CLI tests (no tests of its own).

- `tiny_llama_dir`: a tiny random Llama saved with transformers' `save_pretrained`, with Mistral's
  real sentencepiece `tokenizer.model` (vocab 32000) from `tests/assets.py`.
- `place_in_hf_cache`: lays a folder out exactly as huggingface_hub's cache does
  (`models--org--name/{blobs,snapshots/<rev>,refs/main}`, snapshot files symlinked to blobs), so
  `HF_HUB_OFFLINE=1` runs go through the hub library's real lookups.
- `transformers_from_gguf`: transformers' own GGUF loader, without `accelerate`.
- `run_python`: runs a snippet in a fresh interpreter with the repo importable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from tests.assets import REPO_ROOT, mistral_tokenizer_model
from tests.runtime.tiny_models import decisive_init_

TINY_REVISION = "0123456789abcdef0123456789abcdef01234567"
TINY_REPO = "quill-test/tiny-llama"


def tiny_llama(seed: int = 0):
    """(transformers model, config) with decisive random weights and Mistral's 32000 vocab."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    decisive_init_(model, embed_std=1.0)
    return model, config


def tiny_llama_dir(path: Path, *, seed: int = 0, max_shard_size: str | None = None,
                   architecture: str = "LlamaForCausalLM") -> Path:
    """Save a tiny Llama as an HF folder (safetensors, config, tokenizer.model)."""
    model, _ = tiny_llama(seed)
    path.mkdir(parents=True, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    if architecture != "LlamaForCausalLM":  # save_pretrained writes the class it saved
        config = json.loads((path / "config.json").read_text())
        config["architectures"] = [architecture]
        (path / "config.json").write_text(json.dumps(config))
    shutil.copyfile(mistral_tokenizer_model(), path / "tokenizer.model")
    return path


def place_in_hf_cache(hf_home: Path, repo_id: str, src: Path, extra: dict[str, bytes] = {},
                      revision: str = TINY_REVISION) -> Path:
    """Copy `src`'s files (plus `extra` {relative path: bytes}) into the HF cache; return the
    snapshot folder."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    for rel, data in {**files, **extra}.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def leftovers(cache: Path) -> list[str]:
    """Everything in a Quill cache except lock files: what a failed run must not leave."""
    if not cache.exists():
        return []
    return sorted(
        p.relative_to(cache).as_posix() for p in cache.rglob("*")
        if p.is_file() and p.parent.name != "locks"
    )


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def transformers_from_gguf(path: Path):
    """A transformers model from a GGUF file through transformers' GGUF reader
    (`load_gguf_checkpoint`: its metadata mapping, dequantization and q/k un-permutation) - the
    steps `from_pretrained(..., gguf_file=)` takes, which also insists on `accelerate`."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = dict(load_gguf_checkpoint(str(path))["config"])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if "lm_head.weight" in missing:
        assert config.tie_word_embeddings
        model.tie_weights()
    return model
