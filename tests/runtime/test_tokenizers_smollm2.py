"""SmolLM2-135M-Instruct's vocabulary, read from its GGUF (the embedded default model), encodes code
and prose to the same ids as transformers' GGUF loader
(`AutoTokenizer.from_pretrained(dir, gguf_file=name)`), both straight from the GGUF and from the
files `export_gguf_tokenizer` writes for the converted checkpoint.

One known difference: the GGUF says `tokenizer.ggml.pre = smollm`, which llama.cpp (and SmolLM2's
own tokenizer.json) splits digits off first (`Digits(individual_digits=True)`, then GPT-2's
ByteLevel regex). transformers' GGUF loader leaves out the digit step, which only changes
whitespace right before a digit (`"\r\n9"`: the ByteLevel regex alone keeps `\n` with nothing,
so `\r\n` is not one token). Quill follows the model; random strings are therefore compared with
the loader's vocabulary and merges under SmolLM2's published pre-tokenizer.
"""

from __future__ import annotations

import json

import pytest

from runtime.tokenizer import export_gguf_tokenizer, load_tokenizer
from tests.assets import smollm2_gguf
from tests.runtime.test_tokenizers_random import random_strings

SAMPLES = [
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import os, sys\n\nclass Foo(Bar):\n\tdef __init__(self, x: int = 42) -> None:\n\t\tself.x = x  # it's fine\n",
    "function add(a, b) {\n  return a + b; // TODO: overflow?\n}\nconsole.log(add(1, 2));\n",
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); }",
    "Once upon a time, there was a little girl named Emma who loved to play in the sun.",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! We'll see; they've gone.",
    "Café au lait, naïve façade, Ærø — 日本語のテキスト, emoji 🦙🚀 and numbers 3.14159, 2024-11-25.",
    "    indented\n\n\n\ttabs\t\tand   spaces   \r\nwindows line\n",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    return out, export_gguf_tokenizer(smollm2_gguf(), out)


@pytest.fixture(scope="module")
def reference():
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_export_writes_loadable_files_with_chat_template(exported):
    out, written = exported
    assert written == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["bos_token"] == "<|im_start|>" and config["eos_token"] == "<|im_end|>"
    assert config["add_bos_token"] is False
    assert "<|im_start|>" in config["chat_template"]
    tokenizer = load_tokenizer(out)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (1, 2, 49152)
    assert {0, 2} <= tokenizer.stop_ids


def test_gguf_and_export_match_transformers_gguf_loader(exported, reference):
    out, _ = exported
    for name, tokenizer in (("gguf", load_tokenizer(smollm2_gguf())), ("export", load_tokenizer(out))):
        bad = [s for s in SAMPLES if tokenizer.encode(s) != reference.encode(s, add_special_tokens=False)]
        print(f"smollm2 {name}: {len(SAMPLES) - len(bad)}/{len(SAMPLES)} code/prose samples match transformers' GGUF loader")
        assert not bad, bad[:3]
        for s in SAMPLES:
            assert tokenizer.decode(tokenizer.encode(s)) == s


def test_random_strings_match_smollm2_pre_tokenizer(exported, reference):
    from tokenizers import Tokenizer, pre_tokenizers

    published = Tokenizer.from_str(reference.backend_tokenizer.to_str())
    published.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tokenizer = load_tokenizer(exported[0])
    strings = random_strings(5, 200)
    bad = [s for s in strings if tokenizer.encode(s) != published.encode(s, add_special_tokens=False).ids]
    loader_diff = sum(tokenizer.encode(s) != reference.encode(s, add_special_tokens=False) for s in strings)
    print(f"smollm2: {len(strings) - len(bad)}/{len(strings)} random strings match the loader's vocab with "
          f"SmolLM2's pre-tokenizer; {loader_diff} differ from the loader as is (whitespace before digits)")
    assert not bad, bad[:3]
    assert tokenizer.encode("\r\n9") == [2738, 41]


def test_chat_specials_match_transformers(exported, reference):
    out, _ = exported
    tokenizer = load_tokenizer(out)
    text = "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.encode_special(text) == reference.encode(text, add_special_tokens=False)
    assert tokenizer.encode_special(text)[0] == 1
