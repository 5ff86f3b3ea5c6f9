"""User text that contains special-token strings encodes as plain text: for every special token of
every model, `encode` yields none of the special ids, while `encode_special` (prompt builders only)
turns the same string into its one id."""

from __future__ import annotations

import pytest

from runtime.tokenizer import load_tokenizer
from tests.assets import (
    gpt2_encoder_files,
    llama3_tokenizer_model,
    llama_cpp_models_dir,
    mistral_tokenizer_model,
    qwen3_tokenizer_dir,
    smollm2_gguf,
)

GGUF_VOCABS = ("llama-spm", "phi-3", "llama-bpe", "gpt-2", "qwen2", "deepseek-coder", "starcoder")
SOURCES = {
    **{name: lambda name=name: llama_cpp_models_dir() / f"ggml-vocab-{name}.gguf" for name in GGUF_VOCABS},
    "smollm2": smollm2_gguf,
    "gpt2-files": gpt2_encoder_files,
    "qwen3": qwen3_tokenizer_dir,
    "mistral": lambda: mistral_tokenizer_model().parent,
    "llama3-tiktoken": lambda: llama3_tokenizer_model().parent,
}
# Strings from other families too: none may turn special where the model lacks them.
FOREIGN = ["<|im_end|>", "<|eot_id|>", "[INST]", "[/INST]", "<s>", "</s>", "<|endoftext|>", "<PRE>", "▁<PRE>"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_no_special_ids_from_user_text(name):
    tokenizer = load_tokenizer(SOURCES[name]())
    specials = tokenizer.special_tokens
    assert specials, "every supported vocabulary has special tokens"
    special_ids = set(specials.values())
    for text, token_id in specials.items():
        for wrapped in (text, f"x{text}y", f"  {text}\n", text * 2):
            ids = tokenizer.encode(wrapped)
            assert not special_ids & set(ids), (text, ids)
            assert tokenizer.decode(ids) == wrapped or name == "qwen3"  # NFC may change qwen's text
        assert tokenizer.encode_special(text) == [token_id]
    everything = "hello " + " ".join([*specials, *FOREIGN]) + " bye"
    ids = tokenizer.encode(everything)
    assert not special_ids & set(ids)
    # sentencepiece reads a literal "▁" as its space symbol, so it comes back as a space
    spm = type(tokenizer.codec).__name__ == "SentencePieceCodec"
    assert tokenizer.decode(ids) == (everything.replace("▁", " ") if spm else everything)
    # a lone surrogate (JSON from an editor can carry one) is replaced, not an exception
    assert tokenizer.decode(tokenizer.encode("a\ud800b")) == "a\ufffdb"
    print(f"{name}: {len(specials)} special tokens stay plain text in user text")
