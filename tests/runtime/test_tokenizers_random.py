"""Seeded random strings (code, whitespace runs, unicode, emoji) encode to the same ids as an
independent reference that loads the same vocabulary file:

- GPT-2 `encoder.json` + `vocab.bpe`: Hugging Face `tokenizers` BPE with the ByteLevel
  pre-tokenizer, and tiktoken's r50k ranks from `gpt2.tiktoken`;
- Qwen3 `tokenizer.json`: Hugging Face `tokenizers` reading the same file;
- Mistral v0.1 `tokenizer.model`: the sentencepiece library on the unmodified file;
- Llama 3 tiktoken `tokenizer.model`: transformers' `TikTokenConverter` (merges derived from the
  ranks, run by `tokenizers`).

The same tokenizers then stream random byte-heavy strings through the incremental decoder.
"""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

from runtime.tokenizer import load_tokenizer
from tests.assets import (
    gpt2_encoder_files,
    gpt2_tiktoken,
    llama3_tokenizer_model,
    mistral_tokenizer_model,
    qwen3_tokenizer_dir,
)

N_STRINGS = 300

CODE = [
    "def ", "return ", "self.", "    ", "\t", "if (x == 1) {", "}", "=>", "!==", "::", "->", "#include <stdio.h>",
    "for i in range(10):", "console.log('hi');", "x += 1", "// TODO", "/* */", "\"\"\"doc\"\"\"", "0x1F", "1e-9",
    "foo_bar", "FooBar", "__init__", "it's", "WE'LL", "they've", "I'M", "<div>", "</div>", "[1, 2, 3]", "$$", "@@",
]  # fmt: skip
UNICODE = [
    "é", "e\u0301", "ß", "Ǆ", "日本語", "中文字", "한국어", "Привет", "مرحبا", "שלום", "हिन्दी", "ไทย", "Ελληνικά",
    "½", "²", "٣", "Ⅻ", "\u00a0", "\u3000", "\u200b", "…", "—", "“quoted”", "€", "𝔘𝔫𝔦", "ｆｕｌｌ",
]  # fmt: skip
EMOJI = ["🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "😀😃", "🧑‍💻", "⭐", "🏳️‍🌈"]
SPACES = [" ", "  ", "   ", "\n", "\n\n", "\r\n", " \n ", "\t\t", "        ", " " * 17, "\n" * 5, "\t \n"]


def random_strings(seed: int, n: int = N_STRINGS) -> list[str]:
    rng = random.Random(seed)
    pools = [CODE, UNICODE, EMOJI, SPACES, [str(rng.randint(0, 10**9)) for _ in range(20)]]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(pools)
            parts.append(rng.choice(pool))
            if rng.random() < 0.15:  # a random code point, astral planes included
                parts.append(chr(rng.choice([rng.randint(0x20, 0x7FF), rng.randint(0x800, 0xD7FF), rng.randint(0x10000, 0x3FFFF)])))
        out.append("".join(parts))
    return out


def compare(name: str, ours, reference, strings: list[str]) -> None:
    bad = [(s, ours(s), reference(s)) for s in strings if ours(s) != reference(s)]
    print(f"{name}: {len(strings) - len(bad)}/{len(strings)} random strings identical")
    assert not bad, bad[:3]


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer(gpt2_encoder_files())


@pytest.fixture(scope="module")
def qwen3():
    return load_tokenizer(qwen3_tokenizer_dir())


@pytest.fixture(scope="module")
def mistral():
    return load_tokenizer(mistral_tokenizer_model().parent)


@pytest.fixture(scope="module")
def llama3():
    return load_tokenizer(llama3_tokenizer_model().parent)


def test_gpt2_matches_hf_tokenizers_and_tiktoken(gpt2):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = gpt2_encoder_files()
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    merges = [tuple(line.split(" ")) for line in lines if line]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    strings = random_strings(1)
    compare("gpt2 vs HF tokenizers", gpt2.encode, lambda s: hf.encode(s).ids, strings)
    r50k = tiktoken.Encoding(
        "r50k", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=load_tiktoken_bpe(str(gpt2_tiktoken())), special_tokens={},
    )  # fmt: skip
    compare("gpt2 vs tiktoken r50k", gpt2.encode, r50k.encode_ordinary, strings)
    assert gpt2.encode('def hello():\n    return "world"') == [4299, 23748, 33529, 198, 220, 220, 220, 1441, 366, 6894, 1]


def test_qwen3_matches_hf_tokenizers(qwen3):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    compare("qwen3 vs HF tokenizers", qwen3.encode, lambda s: hf.encode(s, add_special_tokens=False).ids, random_strings(2))
    # NFC: a decomposed é encodes like the composed one, as the file's normalizer says
    assert qwen3.encode("cafe\u0301") == qwen3.encode("café")


def test_mistral_matches_sentencepiece(mistral):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(mistral_tokenizer_model()))
    strings = random_strings(3)
    compare("mistral vs sentencepiece", mistral.encode, sp.encode, strings)
    ids = [sp.encode(s) for s in strings]
    assert [mistral.decode(i) for i in ids] == [sp.decode(i) for i in ids]
    assert mistral.encode("def hello():") == [801, 6312, 28709, 5888]
    assert (mistral.bos_id, mistral.eos_id, mistral.add_bos) == (1, 2, True)


def test_llama3_matches_transformers_tiktoken_converter(llama3):
    from transformers.convert_slow_tokenizer import TikTokenConverter

    hf = TikTokenConverter(vocab_file=str(llama3_tokenizer_model())).converted()
    compare("llama3 vs TikTokenConverter", llama3.encode, lambda s: hf.encode(s, add_special_tokens=False).ids, random_strings(4))
    assert llama3.encode('def hello():\n    return "world"') == [755, 24748, 4019, 262, 471, 330, 14957, 1]
    assert llama3.vocab_size == 128256 and llama3.special_tokens["<|eot_id|>"] == 128009
    assert {128001, 128008, 128009} <= llama3.stop_ids and llama3.add_bos


def byte_heavy_strings(seed: int, n: int = 150) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            kind = rng.random()
            if kind < 0.3:
                chars.append(rng.choice(EMOJI))
            elif kind < 0.6:
                chars.append(chr(rng.choice([rng.randint(0x80, 0x7FF), rng.randint(0x800, 0xD7FF), rng.randint(0x10000, 0x2FFFF)])))
            else:
                chars.append(rng.choice(UNICODE + SPACES + CODE))
        out.append("".join(chars))
    return out


@pytest.mark.parametrize("name", ["gpt2", "qwen3", "mistral", "llama3"])
def test_streaming_equals_one_shot_decode(name, request):
    tokenizer = request.getfixturevalue(name)
    strings = byte_heavy_strings(10)
    for text in strings:
        ids = tokenizer.encode(text)
        stream = tokenizer.incremental_decoder()
        pieces = [stream.push(i) for i in ids] + [stream.flush()]
        joined = "".join(pieces)
        assert joined == tokenizer.decode(ids)
        expected = unicodedata.normalize("NFC", text) if name == "qwen3" else text
        assert joined == expected
        assert all("\ufffd" not in p for p in pieces)  # no broken character ever emitted
    # Arbitrary id sequences (a model may emit any order): stream still equals decode
    rng = random.Random(11)
    for _ in range(100):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randint(1, 30))]
        stream = tokenizer.incremental_decoder()
        assert "".join(stream.push(i) for i in ids) + stream.flush() == tokenizer.decode(ids)
    print(f"{name}: {len(strings)} byte-heavy strings and 100 random id sequences streamed")
