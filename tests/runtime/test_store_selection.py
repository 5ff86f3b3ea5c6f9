"""Which files a download takes, and how model references are read (no weights, no network)."""

from __future__ import annotations

import pytest

from runtime.convert.file_selection import select_files
from runtime.store.aliases import ALIASES, parse_repo_ref
from runtime.store.cache import hub_model_name

# The shape of mistralai/Mistral-7B-Instruct-v0.1's listing: both weight formats, plus extras.
MISTRAL_LISTING = [
    ".gitattributes", "README.md", "config.json", "generation_config.json",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
    "pytorch_model.bin.index.json",
    "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
    "original/consolidated.00.pth", "original/params.json", "original/tokenizer.model",
    "onnx/model.onnx", "banner.png", "assets/diagram.jpg", "mistral-7b.Q4_0.gguf",
    "flax_model.msgpack", "tf_model.h5", "consolidated.safetensors", "training_args.bin",
]


def test_safetensors_repo_takes_only_safetensors_configs_and_tokenizer():
    chosen = select_files(MISTRAL_LISTING)
    print("selected:", chosen)
    assert chosen == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "config.json", "generation_config.json",
        "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
    ]
    for never in ("pytorch_model-00001-of-00002.bin", "original/tokenizer.model", "banner.png",
                  "mistral-7b.Q4_0.gguf", "onnx/model.onnx", "consolidated.safetensors"):
        assert never not in chosen


def test_bin_weights_only_when_there_are_no_safetensors():
    listing = [n for n in MISTRAL_LISTING if not n.endswith((".safetensors", "safetensors.index.json"))]
    chosen = select_files(listing)
    assert [n for n in chosen if "pytorch_model" in n] == [
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
    ]
    assert "training_args.bin" not in chosen and "original/consolidated.00.pth" not in chosen


def test_gpt2_style_tokenizer_files_are_selected():
    chosen = select_files(["model.safetensors", "config.json", "vocab.json", "merges.txt", "64.png"])
    assert chosen == ["model.safetensors", "config.json", "merges.txt", "vocab.json"]


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("smollm2", ("HuggingFaceTB/SmolLM2-135M-Instruct", None)),
        ("SmolLM2", ("HuggingFaceTB/SmolLM2-135M-Instruct", None)),
        ("phi-3", ("microsoft/Phi-3-mini-4k-instruct", None)),
        ("meta-llama/Llama-2-7b-chat-hf@refs/pr/1", ("meta-llama/Llama-2-7b-chat-hf", "refs/pr/1")),
        ("Qwen/Qwen2.5-Coder-0.5B@v1.0", ("Qwen/Qwen2.5-Coder-0.5B", "v1.0")),
        ("a/b/c", None),
        ("../x", None),
        ("", None),
    ],
)
def test_parse_repo_ref(ref, expected):
    assert parse_repo_ref(ref) == expected


def test_every_alias_names_the_issue_repo():
    assert ALIASES == {
        "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "phi-2": "microsoft/phi-2",
        "phi-3": "microsoft/Phi-3-mini-4k-instruct",
        "llama-2": "meta-llama/Llama-2-7b-chat-hf",
        "llama-3": "meta-llama/Meta-Llama-3-8B-Instruct",
        "mistral": "mistralai/Mistral-7B-Instruct-v0.1",
    }


def test_cache_folder_names_keep_revisions_apart():
    assert hub_model_name("org/name", None) == "org--name"
    assert hub_model_name("org/name", "refs/pr/1") == "org--name--refs_pr_1"
    assert hub_model_name("org/name", "v1") != hub_model_name("org/name", None)
