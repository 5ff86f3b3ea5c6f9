"""`load_tokenizer` picks the tokenizer from the files present, and reads added tokens from each
place Hugging Face checkpoints keep them.

The Phi-3 layout (a 32000-piece sentencepiece model plus `<|endoftext|>`, `<|user|>`, `<|end|>`...
declared outside it) is rebuilt from llama.cpp's llama-spm vocab (its pieces equal Phi-3's first
32000) with the specials declared in `tokenizer_config.json`, `tokenizer.json` or
`added_tokens.json`; it must tokenize exactly like llama.cpp's complete phi-3 vocab GGUF.
"""

from __future__ import annotations

import json
import shutil

import pytest

from runtime.errors import TokenizerError
from runtime.tokenizer import TOKENIZER_FILE_NAMES, export_gguf_tokenizer, load_tokenizer
from runtime.tokenizer.gguf_metadata import read_gguf_metadata
from tests.assets import gpt2_encoder_files, llama_cpp_models_dir, qwen3_tokenizer_dir
from tests.runtime.test_tokenizers_reference import reference_cases

CHAT = "<|user|>\nWrite a loop.<|end|>\n<|assistant|>\nfor i in range(3): pass<|end|>\n<|endoftext|>"


def _phi3_specials() -> dict[int, str]:
    meta = read_gguf_metadata(llama_cpp_models_dir() / "ggml-vocab-phi-3.gguf")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    return {i: tokens[i] for i in range(32000, 32011) if types[i] == 3}


@pytest.fixture(scope="module")
def phi3_gguf():
    return load_tokenizer(llama_cpp_models_dir() / "ggml-vocab-phi-3.gguf")


@pytest.mark.parametrize("where", ["tokenizer_config.json", "tokenizer.json", "added_tokens.json"])
def test_sentencepiece_with_declared_added_tokens(where, tmp_path, phi3_gguf):
    export_gguf_tokenizer(llama_cpp_models_dir() / "ggml-vocab-llama-spm.gguf", tmp_path)
    specials = _phi3_specials()
    entries = {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False} for i, t in specials.items()}
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["eos_token"] = "<|endoftext|>"
    if where == "tokenizer_config.json":
        config["added_tokens_decoder"].update(entries)
    elif where == "tokenizer.json":
        added = [{"id": int(i), **e, "normalized": False, "single_word": False} for i, e in entries.items()]
        (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": added}), encoding="utf-8")
    else:
        (tmp_path / "added_tokens.json").write_text(json.dumps({t: i for i, t in specials.items()}), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")

    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.vocab_size == 32011 and tokenizer.eos_id == 32000
    assert {32000, 32007} <= tokenizer.stop_ids
    assert tokenizer.encode_special(CHAT) == phi3_gguf.encode_special(CHAT)
    assert not set(specials) & set(tokenizer.encode(CHAT))
    cases = reference_cases(llama_cpp_models_dir(), "phi-3")
    assert all(tokenizer.encode(text) == want for text, want in cases)


def test_file_kinds_are_recognised(tmp_path):
    gpt2 = load_tokenizer(gpt2_encoder_files())
    shutil.copy(gpt2_encoder_files() / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(gpt2_encoder_files() / "vocab.bpe", tmp_path / "merges.txt")
    renamed = load_tokenizer(tmp_path)
    text = "def f(x):\n    return x ** 2  # <|endoftext|>"
    assert renamed.encode(text) == gpt2.encode(text)
    assert renamed.special_tokens == {"<|endoftext|>": 50256} and renamed.eos_id == 50256
    assert type(load_tokenizer(qwen3_tokenizer_dir()).codec).__name__ == "ByteLevelBPE"
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert name in TOKENIZER_FILE_NAMES


def test_unusable_files_raise_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    metaspace = {"model": {"type": "BPE", "vocab": {}, "merges": [], "byte_fallback": True},
                 "pre_tokenizer": {"type": "Metaspace"}}  # fmt: skip
    (tmp_path / "tokenizer.json").write_text(json.dumps(metaspace), encoding="utf-8")
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer.model").write_bytes(b"\x00\x01garbage that is not a model")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)
