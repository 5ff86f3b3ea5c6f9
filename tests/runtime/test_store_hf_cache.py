"""A model in a real Hugging Face cache layout, HF_HUB_OFFLINE=1: resolve -> select -> convert ->
load -> generate, through huggingface_hub's own cache lookups (no hub, no mocks)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import torch

from runtime.checkpoint import load_tensors, read_manifest
from runtime.store import list_models, resolve_model
from tests.runtime.test_store_fixtures import (
    TINY_REPO, TINY_REVISION, place_in_hf_cache, tiny_llama, tiny_llama_dir,
)

# Files a repo may hold that a conversion must never open. Their contents are garbage, so
# reading any of them would also fail loudly.
UNNEEDED = {
    "pytorch_model.bin": b"PK\x03\x04 not really a zip",
    "original/consolidated.00.pth": b"garbage weights",
    "original/params.json": b"{not json",
    "original/tokenizer.model": b"garbage",
    "banner.png": b"\x89PNG\r\n\x1a\n garbage",
    "assets/diagram.jpg": b"\xff\xd8\xff garbage",
    "onnx/model.onnx": b"garbage",
    "tiny.Q4_0.gguf": b"GGUF garbage",
    "consolidated.safetensors": b"garbage",
    "flax_model.msgpack": b"garbage",
    "README.md": b"# tiny",
}

_OPENED: list[str] | None = None


def _audit(event: str, args) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def _greedy_reference(model, prompt_ids: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt_ids):].tolist()


def test_offline_hf_cache_end_to_end_and_unneeded_files_never_opened(tmp_path, hf_home):
    global _OPENED
    from runtime.engine import Engine, GenerationConfig

    snapshot = place_in_hf_cache(hf_home, TINY_REPO, tiny_llama_dir(tmp_path / "src"), UNNEEDED)
    cache = tmp_path / "quill"
    events: list[tuple[str, int, int]] = []
    _OPENED = []
    try:
        ckpt = resolve_model(TINY_REPO, cache_dir=cache, progress=lambda *e: events.append(e))
    finally:
        opened, _OPENED = _OPENED, None

    never = set()
    for rel in UNNEEDED:
        never |= {str(snapshot / rel), os.path.realpath(snapshot / rel)}
    touched = sorted(p for p in opened if p in never or os.path.realpath(p) in never)
    print(f"{len(opened)} opens during resolve; unneeded files touched: {touched}")
    assert touched == []
    # The hook does see the files a conversion reads (it is not blind).
    assert any(p.endswith("config.json") and "snapshots" in p for p in opened)
    assert any(p.endswith("tokenizer.model") and "snapshots" in p for p in opened)

    manifest = read_manifest(ckpt)
    assert manifest.source == {"kind": "hf", "ref": TINY_REPO, "revision": TINY_REVISION,
                               "repo_id": TINY_REPO, "requested_revision": None}
    assert sorted(os.listdir(ckpt)) == ["config.json", "generation_config.json", "model.safetensors",
                                        "quill.json", "tokenizer.model"]
    phases = [e[0] for e in events]
    assert set(phases) == {"convert"} and events[-1][1] == events[-1][2] > 0
    assert [e[1] for e in events] == sorted(e[1] for e in events)

    engine = Engine.load(ckpt, device="cpu", precision="float32")
    reference, _ = tiny_llama(0)
    prompt = [1, *engine.tokenizer.encode("def hello(name):\n    return")]
    ours = engine.generate(prompt, GenerationConfig(max_new_tokens=16, stop_ids=frozenset()))
    ref_ids = _greedy_reference(reference, prompt, 16)
    print("prompt", prompt, "quill", ours.token_ids, "transformers", ref_ids)
    assert ours.token_ids == ref_ids

    # Second resolve: the converted copy is reused even with the HF cache gone.
    shutil.rmtree(hf_home)
    events.clear()
    assert resolve_model(TINY_REPO, cache_dir=cache, progress=lambda *e: events.append(e)) == ckpt
    assert events == []
    assert [m.name for m in list_models(cache)] == [TINY_REPO]


def test_revision_and_bin_only_folder(tmp_path, hf_home):
    """`repo@sha` resolves that snapshot; a folder with only `.bin` weights (read through
    `torch.load(weights_only=True)`) and a sharded copy with an index convert to the same
    tensors as the single safetensors file."""
    model, _ = tiny_llama(1)
    src = tiny_llama_dir(tmp_path / "src", seed=1)
    place_in_hf_cache(hf_home, TINY_REPO, src)
    cache = tmp_path / "quill"
    from_st = resolve_model(f"{TINY_REPO}@{TINY_REVISION}", cache_dir=cache)
    assert from_st.name.endswith(TINY_REVISION)
    assert read_manifest(from_st).source["requested_revision"] == TINY_REVISION

    bin_dir = tmp_path / "bin-only"
    bin_dir.mkdir()
    for name in ("config.json", "tokenizer.model", "generation_config.json"):
        shutil.copyfile(src / name, bin_dir / name)
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    from_bin = resolve_model(str(bin_dir), cache_dir=cache)
    sharded = resolve_model(str(tiny_llama_dir(tmp_path / "sharded", seed=1, max_shard_size="1MB")),
                            cache_dir=cache)
    c = load_tensors(sharded, read_manifest(sharded))
    a = load_tensors(from_st, read_manifest(from_st))
    b = load_tensors(from_bin, read_manifest(from_bin))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert read_manifest(from_bin).source["kind"] == "hf-dir"
    print(f"{len(a)} native tensors identical from one .safetensors, shards and .bin")


def test_an_edited_local_source_is_converted_again(tmp_path):
    src = tiny_llama_dir(tmp_path / "src", seed=2)
    cache = tmp_path / "quill"
    first = resolve_model(str(src), cache_dir=cache)
    before = read_manifest(first).source["revision"]
    assert resolve_model(str(src), cache_dir=cache) == first  # unchanged: reused
    tiny_llama_dir(src, seed=4)  # the user re-saves different weights into the same folder
    second = resolve_model(str(src), cache_dir=cache)
    assert second == first and read_manifest(second).source["revision"] != before
    model, _ = tiny_llama(4)
    emb = load_tensors(second, read_manifest(second))["tok_embeddings.weight"]
    assert torch.equal(emb, model.state_dict()["model.embed_tokens.weight"])
    assert [p.name for p in (cache / "models").iterdir()] == [first.name]
